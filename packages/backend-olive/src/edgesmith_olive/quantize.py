"""ONNX GenAI bundle -> quantized GenAI bundle through one Olive ONNX pass.

This is the weight-only ``quantize onnx`` operation. The backend declares two
other quantize operations with their own handlers: GPTQ from a Hugging Face
checkpoint (``gptq.py``) and static QDQ of ONNX models that are not GenAI
bundles (``static.py``, chosen by the core for ``--activation-bits``).

Olive's weight-only passes (RTN, HQQ) rename the output of every MatMul they
quantize, the graph output ``logits`` included (``logits_Q4``), which
onnxruntime-genai then cannot find. A GraphSurgeries ``RenameOutputs`` step in
the same workflow restores the names, so ``olive run`` reproduces a bundle
that loads.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgesmith.errors import UnsupportedError, UserError
from edgesmith.types import Artifact, Context, QuantSpec

from . import bundle, workflow
from .convert import external_data
from .schemes import SCHEMES, check_block_size

#: How errors name this operation (the core's label for it).
LABEL = "olive quantize onnx (bundle)"
#: A plain ONNX graph given to the weight-only path.
NOT_A_BUNDLE = ("this ONNX model is not an ONNX Runtime GenAI bundle; quantize it statically with "
                "--activation-bits 8 (or 16) --calibration DIR")
#: A GenAI bundle given to the static path.
STATIC_IS_NOT_FOR_BUNDLES = ("static activation quantization (QDQ) is for ONNX models that are not LLMs; "
                             "for GenAI bundles use weight-only --bits 4/8")
#: Ops that mark a graph as already quantized.
_QUANT_OPS = {"MatMulNBits", "MatMulInteger", "DynamicQuantizeMatMul", "GatherBlockQuantized",
              "QuantizeLinear", "DequantizeLinear", "MatMulBnb4", "QLinearMatMul"}


def _resolve(spec: QuantSpec) -> tuple[int, str]:
    """(bits, method) from the spec: a native scheme wins over the common fields."""
    if spec.scheme:
        key = spec.scheme.lower()
        if key not in SCHEMES:
            raise UnsupportedError(f"olive has no scheme {spec.scheme!r}; use one of {', '.join(SCHEMES)}")
        bits, method, _ = SCHEMES[key]
        if spec.bits is not None and spec.bits != bits:
            raise UserError(f"scheme {spec.scheme} is {bits}-bit but --bits {spec.bits} was given; drop one")
        if spec.method and spec.method.lower() != method:
            raise UserError(f"scheme {spec.scheme} uses {method}, not {spec.method}; drop --method")
        return bits, method
    bits = spec.bits
    method = (spec.method or "").lower()
    if bits == 4:
        method = method or "rtn"
        if method not in ("rtn", "hqq", "gptq", "awq"):
            raise UnsupportedError(f"olive int4 supports --method rtn or hqq, not {method}")
    elif bits == 8:
        method = method or "rtn"
        if method not in ("rtn", "dynamic"):
            raise UnsupportedError(f"olive int8 supports --method rtn (weight-only) or dynamic, not {method}")
    elif bits == 16:
        method = method or "fp16"
        if method not in ("fp16", "float16"):
            raise UnsupportedError(f"16-bit in olive means float16 weights; drop --method {method}")
        method = "fp16"
    else:
        raise UnsupportedError(f"olive quantizes to 4, 8 or 16 bits, not {bits}; try --bits 4")
    return bits, method


def plan(spec: QuantSpec, options: Mapping[str, Any]) -> tuple[dict[str, dict], dict]:
    """The Olive passes for ``spec`` and the parsed ``options``
    (:data:`edgesmith_olive.options.BUNDLE`), and the facts for the manifest."""
    bits, method = _resolve(spec)
    if method in ("gptq", "awq"):
        # GPTQ needs the float PyTorch weights, which a bundle no longer has.
        raise UserError(
            f"{method.upper()} starts from the Hugging Face checkpoint, not an ONNX bundle; run: edgesmith "
            "quantize HF_MODEL_DIR --bits 4 --method gptq --calibration FILE.txt --backend olive -o OUT"
        )
    if spec.activation_bits is not None:
        raise UnsupportedError(STATIC_IS_NOT_FOR_BUNDLES)
    if spec.ratio is not None and spec.ratio != 1:
        raise UnsupportedError("olive quantizes every MatMul; mixed --ratio is not supported")
    if spec.calibration is not None:
        raise UnsupportedError(
            f"{method} is not data-aware, so --calibration is not used; drop it (or use --method gptq "
            "on the Hugging Face checkpoint)"
        )
    weight_only = method in ("rtn", "hqq")
    if not weight_only and spec.group_size is not None:
        raise UnsupportedError(f"--group-size applies to weight-only rtn/hqq, not {method}; drop it")
    level = options.get("accuracy_level")
    if level is not None and not weight_only:
        raise UserError(f"{LABEL}: option accuracy_level applies to weight-only rtn/hqq, "
                        f"not {method}; drop it")
    if level is None and weight_only and options["provider"] == "cpu":
        # Unset (0) means float32 activations. ONNX Runtime 1.32's CPU kernels
        # are far slower that way, 8-bit worst (SmolLM2-135M on 2 AVX2 cores:
        # int8 1 tok/s unset vs 68 with int8 activations, int4 43 vs 118),
        # while perplexity moves by about 1 % (int8 30.0 vs 29.8, fp32 29.9).
        # Level 4 is also the GenAI builder's own CPU default.
        level = 4

    details: dict = {"bits": bits, "method": method}
    passes: dict[str, dict] = {}
    if weight_only:
        block = check_block_size(spec.group_size if spec.group_size is not None else 32,
                                 f"--group-size {spec.group_size}")
        conf: dict = {"block_size": block}
        if level is not None:
            conf["accuracy_level"] = level
        if method == "rtn":
            symmetric = True if spec.symmetric is None else spec.symmetric
            passes["quantize"] = {"type": "OnnxBlockWiseRtnQuantization", "bits": bits,
                                  "is_symmetric": symmetric, **conf}
            details["symmetric"] = symmetric
        else:
            if bits != 4:
                raise UnsupportedError("HQQ in Olive is 4-bit only; use --bits 4")
            if spec.symmetric:
                raise UnsupportedError("HQQ is asymmetric (it fits a zero point); drop --symmetric")
            passes["quantize"] = {"type": "OnnxHqqQuantization", **conf}
            details["symmetric"] = False
        details.update(block_size=block, accuracy_level=level)
        # Filled in by quantize() once the graph's output names are read.
        passes["restore_names"] = {"type": "GraphSurgeries", "surgeries": []}
    elif method == "dynamic":
        passes["quantize"] = {"type": "OnnxDynamicQuantization", "precision": "int8",
                              "op_types_to_quantize": ["MatMul"]}
    else:
        passes["quantize"] = {"type": "OnnxFloatToFloat16", "keep_io_types": True}
    last = list(passes)[-1]
    passes[last].update(external_data())
    return passes, details


def output_suffix(bits: int) -> str:
    """What Olive's weight-only passes append to a quantized MatMul's output name."""
    return f"_Q{bits}"


def _already_quantized(model: Path) -> set[str]:
    import onnx

    proto = onnx.load(str(model), load_external_data=False)
    found = {n.op_type for n in proto.graph.node} & _QUANT_OPS
    fp16 = any(i.data_type == onnx.TensorProto.FLOAT16 for i in proto.graph.initializer)
    return found | ({"float16 weights"} if fp16 else set())


def quantize(source: Artifact, spec: QuantSpec, options: Mapping[str, Any], output: Path,
             ctx: Context) -> Artifact:
    """Handler of the weight-only ``quantize onnx`` (a GenAI bundle); ``options``
    are parsed by the core (:data:`edgesmith_olive.options.BUNDLE`)."""
    src_dir = Path(source.directory)
    if not bundle.is_genai(src_dir):
        # An encoder or vision graph: the static operation takes it, which the
        # core picks only for a request with activation bits.
        raise UserError(NOT_A_BUNDLE)
    passes, details = plan(spec, options)
    provider = options["provider"]
    bundle.genai_dir(src_dir)
    model_name = bundle.decoder_file(src_dir)
    quantized = _already_quantized(src_dir / model_name)
    allowed = getattr(ctx, "allow_requantize", None)
    if allowed is None:  # older core: --force doubled as the re-quantize switch
        allowed = ctx.force
    if quantized and not allowed:
        raise UserError(
            f"{src_dir} is already quantized ({', '.join(sorted(quantized))}); "
            "quantize the float bundle instead, or pass --allow-requantize"
        )
    if "restore_names" in passes:
        import onnx

        proto = onnx.load(str(src_dir / model_name), load_external_data=False)
        suffix = output_suffix(details["bits"])
        outs = [o.name for o in proto.graph.output]
        passes["restore_names"]["surgeries"] = [
            {"surgeon": "RenameOutputs", "old_names": [o + suffix for o in outs], "new_names": outs}
        ]
    input_model = {"type": "ONNXModel", "model_path": str(src_dir.resolve()), "onnx_file_name": model_name}
    what = f"{details['method']} {details['bits']}-bit"
    olive_out = workflow.run_workflow(input_model, passes, provider, output, ctx, what=what)
    produced = "model.onnx"
    bundle.move_model(olive_out, output, produced)
    if produced != model_name:
        (output / produced).rename(output / model_name)
    bundle.copy_support_files(src_dir, output)
    repairs = bundle.repair(output, src_dir)
    workflow.finish(output)
    _check_outputs(output / model_name, src_dir / model_name)
    details.update(
        scheme=spec.scheme or None,
        bundle="onnxruntime-genai",
        provider=provider,
        olive_passes=[p["type"] for p in passes.values()],
        olive_config=workflow.CONFIG_NAME,
        log=workflow.LOG_NAME,
        repairs=repairs,
        reproduce=workflow.reproduce(),
    )
    return Artifact(path=output, format="onnx", entry=model_name, details=details)


def _check_outputs(new: Path, old: Path) -> None:
    """The quantized graph must keep the output names genai_config.json refers to."""
    import onnx

    a = [o.name for o in onnx.load(str(new), load_external_data=False).graph.output]
    b = [o.name for o in onnx.load(str(old), load_external_data=False).graph.output]
    if a != b:
        from edgesmith.errors import BackendError

        raise BackendError(f"Olive changed the model's outputs {b} to {a}; the bundle would not load")
