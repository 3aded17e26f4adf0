"""NNCF weight compression (INT8/INT4 and friends) and full INT8 post-training quantization."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgesmith.calibration import array_samples, text_lines
from edgesmith.errors import BackendError, UnsupportedError, UserError
from edgesmith.lmfeed import lm_feed
from edgesmith.types import Artifact, Context, QuantSpec

from . import stack
from .patches import job
from .schemes import DATA_AWARE, QuantPlan, plan

COMPRESSED_TYPES = {"u4", "i4", "u8", "i8", "nf4", "f4e2m1", "f8e4m3", "f8e8m0", "u2", "u3"}


@job
def quantize(source: Artifact, spec: QuantSpec, opts: Mapping[str, Any], output: Path,
             ctx: Context) -> Artifact:
    """Handler of both ``quantize openvino`` operations; ``opts`` are parsed by the core
    (:data:`~edgesmith_openvino.options.WEIGHT_OPTIONS`, or ``PTQ_OPTIONS`` for int8_ptq)."""
    p = plan(spec)
    xml = stack.ir_file(source)
    ctx.progress(f"reading {xml.name}", None, None)
    model = stack.read_model(xml)
    if _already_compressed(model) and not (ctx.allow_requantize or ctx.force):
        raise UserError(f"{xml} already holds quantized weights; quantize the fp16/fp32 IR instead "
                        f"or pass --allow-requantize")
    src_dir = Path(source.path)
    if p.ptq:
        model, facts = _ptq(model, spec, opts, src_dir, ctx)
    else:
        model, facts = _compress(model, p, spec, opts, src_dir, ctx)
    ctx.progress("saving the quantized IR", None, None)
    out_xml = output / "openvino_model.xml"
    # compress_to_fp16=False keeps the precision of the layers NNCF left alone as they were.
    stack.ov().save_model(model, str(out_xml), compress_to_fp16=False)
    stack.copy_side_files(src_dir, output)
    src_bytes = stack.file_size(xml, xml.with_suffix(".bin"))
    out_bytes = stack.file_size(out_xml, out_xml.with_suffix(".bin"))
    return Artifact(path=output, format="openvino", entry="openvino_model.xml", details={
        "scheme": p.scheme,
        **facts,
        "ir_bytes": out_bytes,
        "source_ir_bytes": src_bytes,
        "size_ratio": round(out_bytes / src_bytes, 4) if src_bytes else None,
        # The .bin alone: for tiny models the graph text (.xml) is a large share of the total.
        "weights_ratio": _ratio(out_xml.with_suffix(".bin"), xml.with_suffix(".bin")),
    })


def _ratio(a: Path, b: Path) -> float | None:
    sb = stack.file_size(b)
    return round(stack.file_size(a) / sb, 4) if sb else None


def _already_compressed(model: Any) -> bool:
    for op in model.get_ops():
        if op.get_type_name() == "Constant" and op.get_element_type().get_type_name() in COMPRESSED_TYPES:
            if math.prod(op.get_output_shape(0)) >= 1024:
                return True
    return False


def _weight_inputs(model: Any) -> list[tuple[str, int]]:
    """(name, reduction size) of every MatMul/Gather whose weight is a constant."""
    found = []
    for op in model.get_ops():
        kind = op.get_type_name()
        if kind != "MatMul":
            continue
        src = op.input_value(1).get_node()
        while src.get_type_name() in ("Convert", "Reshape") and src.get_input_size():
            src = src.input_value(0).get_node()
        if src.get_type_name() != "Constant":
            continue
        shape = op.input_value(1).get_partial_shape()
        if not shape.is_static or len(shape) < 2:
            continue
        dims = [d.get_length() for d in shape]
        transpose_b = op.get_attributes().get("transpose_b", False)
        found.append((op.get_friendly_name(), dims[-1] if transpose_b else dims[-2]))
    return found


def _check_group(model: Any, p: QuantPlan) -> None:
    g = p.group_size
    if not p.is_int4_family or g is None or g <= 0:
        return
    sizes = _weight_inputs(model)
    bad = sorted({n for _, n in sizes if n % g})
    if bad:
        sizes_all = {n for _, n in sizes}
        fits = [c for c in (32, 64, 128, 256) if all(n % c == 0 for n in sizes_all)]
        hint = f"use --group-size {' or '.join(map(str, fits))}" if fits else "use --group-size -1 (per channel)"
        raise UserError(
            f"group size {g} does not divide the layer input size {bad[0]} of this model; {hint}"
        )


def _compress(model: Any, p: QuantPlan, spec: QuantSpec, opts: Mapping[str, Any], src_dir: Path,
              ctx: Context) -> tuple[Any, dict[str, Any]]:
    _check_group(model, p)
    data_aware = p.method in DATA_AWARE or "sensitivity_metric" in opts
    if data_aware and spec.calibration is None:
        raise UserError(f"{spec.method or 'sensitivity_metric'} is data-aware; give --calibration FILE "
                        f"(plain text, one sample per line)")
    stack.quiet()
    import nncf

    kwargs: dict[str, Any] = {"mode": nncf.CompressWeightsMode(p.scheme)}
    if p.group_size is not None:
        kwargs["group_size"] = p.group_size
    if p.ratio is not None:
        kwargs["ratio"] = p.ratio
    if "all_layers" in opts:
        kwargs["all_layers"] = opts["all_layers"]
    if "backup_mode" in opts:
        kwargs["backup_mode"] = nncf.BackupMode(opts["backup_mode"])
    if "sensitivity_metric" in opts:
        kwargs["sensitivity_metric"] = nncf.SensitivityMetric(opts["sensitivity_metric"])
    if p.method:
        kwargs[p.method] = True
    samples = 0
    if spec.calibration is not None and (data_aware or p.method):
        ctx.progress("tokenizing the calibration text", None, None)
        items = text_samples(model, spec.calibration, src_dir)
        samples = len(items)
        kwargs["dataset"] = nncf.Dataset(items)
        kwargs["subset_size"] = opts["subset_size"]
    ctx.progress(f"compressing weights to {p.scheme}", None, None)
    try:
        model = nncf.compress_weights(model, **kwargs)
    except (nncf.ValidationError, nncf.UnsupportedModelError) as exc:
        raise UnsupportedError(f"NNCF refused {p.scheme}: {stack.first_line(exc)}") from None
    except (KeyboardInterrupt, UserError):
        raise
    except Exception as exc:
        raise BackendError(f"NNCF weight compression failed: {stack.first_line(exc)}") from exc
    facts = {
        "mode": p.scheme,
        "group_size": kwargs.get("group_size", "nncf default"),
        "ratio": kwargs.get("ratio", 1.0),
        "all_layers": bool(kwargs.get("all_layers", False)),
        "method": p.method or "rtn",
        "calibration_samples": samples,
        "subset_size": kwargs.get("subset_size"),
        "nncf_call": "nncf.compress_weights(" + ", ".join(
            f"{k}={v.value if hasattr(v, 'value') else v}" for k, v in kwargs.items() if k != "dataset"
        ) + (", dataset=..." if "dataset" in kwargs else "") + ")",
    }
    return model, facts


def text_samples(model: Any, calibration: Path, src_dir: Path) -> list[dict[str, Any]]:
    """Inputs of a stateful causal-LM IR, one per line of the calibration text."""
    lines = text_lines(calibration)
    tok_xml = src_dir / "openvino_tokenizer.xml"
    if not tok_xml.exists():
        raise UserError(f"{src_dir} has no openvino_tokenizer.xml to read the calibration text; "
                        f"convert the model with edgesmith convert --to openvino")
    import openvino_tokenizers  # noqa: F401 - registers the tokenizer operations

    tokenizer = stack.core().compile_model(str(tok_xml), "CPU")
    names = {i.get_any_name() for i in model.inputs}
    if "input_ids" not in names:
        raise UserError("the model has no input_ids input; text calibration is for language-model IR")
    return [lm_feed(tokenizer([line])["input_ids"][0], names) for line in lines]


def _ptq(model: Any, spec: QuantSpec, opts: Mapping[str, Any], src_dir: Path,
         ctx: Context) -> tuple[Any, dict[str, Any]]:
    if stack.is_llm(src_dir):
        raise UnsupportedError("int8_ptq is for encoder and vision IR; compress a language model's "
                               "weights with int8_asym/int4_asym instead")
    if spec.calibration is None:
        raise UserError("int8_ptq needs --calibration DIR (one NAME.npy per model input) or, "
                        "for a text encoder, --calibration FILE.txt (one sample per line)")
    stack.quiet()
    import nncf

    cal = Path(spec.calibration)
    extra: dict[str, Any] = {"calibration": "arrays"}
    if cal.suffix.lower() in (".npy", ".npz") and not cal.is_dir():
        raise UserError(f"{cal} is one array file; int8_ptq calibrates from a directory with one "
                        f"NAME.npy per model input, or from a text file")
    if not cal.is_dir():
        from .calibration import encoder_text_samples

        ctx.progress("tokenizing the calibration text", None, None)
        items, extra = encoder_text_samples(model, cal, src_dir, opts)
    else:
        used = sorted(k for k in ("max_length", "tokenizer") if k in opts)
        if used:
            raise UserError(f"{', '.join(used)} apply to text calibration only; drop them or give "
                            f"--calibration FILE.txt")
        ctx.progress("reading calibration arrays", None, None)
        from .graph import input_specs

        items = array_samples(cal, input_specs(model.inputs))
    preset = opts["preset"]
    kwargs: dict[str, Any] = {"subset_size": opts["subset_size"],
                              "preset": nncf.QuantizationPreset(preset)}
    if "model_type" in opts:
        kwargs["model_type"] = nncf.ModelType(opts["model_type"])
    ctx.progress(f"quantizing weights and activations to INT8 ({len(items)} samples)", None, None)
    try:
        model = nncf.quantize(model, nncf.Dataset(items), **kwargs)
    except (KeyboardInterrupt, UserError):
        raise
    except Exception as exc:
        raise BackendError(f"NNCF quantization failed: {stack.first_line(exc)}") from exc
    return model, {"mode": "int8_ptq", "preset": preset, "calibration_samples": len(items),
                   "subset_size": kwargs["subset_size"], **extra,
                   "nncf_call": f"nncf.quantize(model, dataset, preset={preset}, "
                                f"subset_size={kwargs['subset_size']})"}
