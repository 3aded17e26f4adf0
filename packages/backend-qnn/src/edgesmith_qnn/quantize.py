"""Static QDQ quantization for the QNN EP (onnxruntime.quantization's QNN config)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgesmith.calibration import array_samples, text_lines
from edgesmith.errors import BackendError, UserError
from edgesmith.scratch import scratch_dir
from edgesmith.types import Artifact, Context, QuantSpec

from . import calibration, graph
from .schemes import QuantPlan, plan


def quantize(source: Artifact, spec: QuantSpec, opts: Mapping[str, Any], output: Path,
             ctx: Context) -> Artifact:
    """Handler of ``quantize onnx->qnn``; ``opts`` are parsed by the core
    (:data:`edgesmith_qnn.options.QUANTIZE_OPTIONS`)."""
    p = plan(spec, opts.get("calibrate_method"))
    ctx.progress("reading model", None, None)
    path, model, facts = graph.prepare(source, opts)
    if graph.is_qdq(model) and not getattr(ctx, "allow_requantize", False):
        raise UserError(f"{path} already holds QuantizeLinear/DequantizeLinear nodes; quantize the "
                        f"float model instead, or pass --allow-requantize")
    specs = calibration.input_specs(model)
    samples, calib = _samples(spec, opts, path, model, specs)
    rewrites = qdq_graph(model, samples, p, opts, output / graph.MODEL_NAME, ctx)
    side = graph.copy_side_files(path.parent, output)
    details: dict[str, Any] = {
        **scheme_facts(p, opts),
        "calibration": calib,
        "graph_rewrites": rewrites,
        **facts,
        "side_files": side,
    }
    if opts["placement"]:
        ctx.progress("checking placement on the HTP", None, None)
        from .ep import placement

        details["placement"] = placement(output / graph.MODEL_NAME, opts)
    return Artifact(path=output, format="qnn", entry=graph.MODEL_NAME, details=details)


def qdq_graph(model: Any, samples: list[Any], p: QuantPlan, opts: Mapping[str, Any], dest: Path,
              ctx: Context) -> dict[str, int]:
    """Write the QDQ form of the float, static-shape ``model`` to ``dest``, its activation
    ranges from ``samples`` (feeds); returns the graph rewrites made for the HTP."""
    from onnxruntime.quantization import quantize as ort_quantize
    from onnxruntime.quantization.execution_providers.qnn import get_qnn_qdq_config, qnn_preprocess_model

    ctx.progress("calibrating", 0, len(samples))
    # The quantizer logs advice through the root logger; keep the CLI quiet.
    logging.getLogger().setLevel(logging.ERROR)
    act_type, weight_type = p.quant_types()
    with scratch_dir("qnn") as tmp:
        ctx.progress("folding constants", None, None)
        folded, rewrites = graph.simplify_for_htp(model, Path(tmp), abs(opts["mask_value"]))
        pre = Path(tmp) / "pre.onnx"
        # Fuses patterns the HTP has single ops for (LayerNorm, Gelu, ...).
        src = pre if qnn_preprocess_model(str(folded), str(pre), fuse_layernorm=True) else folded
        cfg = get_qnn_qdq_config(
            str(src), calibration.Reader(samples, ctx.progress),
            calibrate_method=p.calibration_method(), activation_type=act_type,
            weight_type=weight_type, per_channel=opts["per_channel"],
            # The QNN EP drops Q/DQ pairs around Relu/Clip when it maps the
            # graph; removing those activations here loses their clamp on the
            # HTP (seen on the simulator), so keep them in the graph.
            keep_removable_activations=opts["keep_activations"],
            init_overrides=_int4_overrides(graph.load(src)) if p.weight_bits == 4 else None,
        )
        try:
            ort_quantize(str(src), str(dest), cfg)
        except (UserError, KeyboardInterrupt):
            raise
        except Exception as exc:
            raise BackendError(f"QDQ quantization failed: {str(exc).strip().splitlines()[0][:300]}") from None
    return rewrites


def scheme_facts(p: QuantPlan, opts: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest's account of the scheme."""
    return {
        "scheme": p.scheme,
        "activation_type": f"uint{p.activation_bits}",
        "weight_type": ("int4 per-channel (MatMul/Gemm/Conv), uint8 elsewhere" if p.weight_bits == 4
                        else f"{'int' if p.weight_symmetric else 'uint'}{p.weight_bits}"),
        "per_channel": opts["per_channel"],
        "calibrate_method": p.calibrate_method,
    }


def _samples(spec: QuantSpec, opts: Mapping[str, Any], path: Path, model: Any,
             specs: Mapping[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    limit = opts.get("samples")
    cal = spec.calibration
    if cal is not None:
        cal = Path(cal)
        if cal.is_dir():
            samples = array_samples(cal, specs, limit)
            kind = "npy"
        elif cal.is_file():
            tok = calibration.find_tokenizer(path.parent, opts.get("tokenizer"))
            if tok is None:
                raise UserError(f"text calibration needs a tokenizer; put tokenizer.json beside "
                                f"{path.name} or pass --option tokenizer=PATH")
            samples = calibration.encode_texts(tok, text_lines(cal)[: limit or 64], specs, calibrate=True)
            kind = "text"
        else:
            raise UserError(f"calibration {cal} does not exist; give a directory of NAME.npy "
                            f"files or a text file")
        if not samples:
            raise UserError(f"calibration {cal} gave no samples; add data to it")
        return samples, {"kind": kind, "source": str(cal), "samples": len(samples)}
    n = limit or 8
    samples = calibration.synthetic(model, specs, n)
    return samples, {"kind": "synthetic", "samples": n,
                     "note": "no --calibration given: random inputs set the activation ranges"}


def _int4_overrides(model: Any) -> dict[str, list[dict[str, Any]]]:
    """Signed 4-bit, per-output-channel overrides for the big weight matrices."""
    from onnxruntime.quantization import QuantType

    inits = {i.name: i for i in model.graph.initializer}
    overrides: dict[str, list[dict[str, Any]]] = {}
    for node in model.graph.node:
        if len(node.input) < 2 or node.input[1] not in inits:
            continue
        w = inits[node.input[1]]
        if node.op_type == "MatMul" and len(w.dims) == 2:
            axis = 1  # [K, N]: N output channels
        elif node.op_type == "Gemm" and len(w.dims) == 2:
            trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
            axis = 0 if trans_b else 1
        elif node.op_type == "Conv":
            axis = 0
        else:
            continue
        overrides[node.input[1]] = [{"quant_type": QuantType.QInt4, "symmetric": True, "axis": axis}]
    if not overrides:
        raise UserError("4-bit weights apply to MatMul/Gemm/Conv weights and this model has none; "
                        "use an 8-bit scheme (a16w8 or a8w8)")
    return overrides

