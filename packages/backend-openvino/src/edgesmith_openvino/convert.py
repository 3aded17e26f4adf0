"""Hugging Face causal LM -> OpenVINO IR (optimum-intel + openvino-tokenizers), ONNX -> IR."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgesmith.errors import BackendError, UnsupportedError, UserError
from edgesmith.types import Artifact, Context
from edgesmith.weights import check_tokenizer

from . import stack
from .options import IR_DTYPES
from .patches import job


def _hf_config(source: Path) -> dict[str, Any]:
    try:
        cfg = json.loads((source / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{source}/config.json cannot be read ({exc}); repair the checkpoint") from None
    if not isinstance(cfg, dict) or "model_type" not in cfg:
        raise UserError(f"{source}/config.json has no model_type; give a Hugging Face model checkpoint")
    return cfg


@job
def hf_to_ir(source: Artifact, opts: Mapping[str, Any], output: Path, ctx: Context) -> Artifact:
    """Handler of ``convert hf->openvino``; ``opts`` are parsed by the core
    (:data:`edgesmith_openvino.options.HF_OPTIONS`)."""
    dtype, task = IR_DTYPES[opts["dtype"]], opts["task"]
    src = Path(source.path)
    cfg = _hf_config(src)
    check_tokenizer(src)  # openvino-genai needs it
    ctx.progress("loading optimum-intel", None, None)
    stack.quiet()
    main_export, OVConfig = optimum_exporter()
    ctx.progress(f"exporting {cfg.get('model_type')} to OpenVINO IR ({dtype})", None, None)
    try:
        # An explicit OVConfig without a quantization config keeps optimum from
        # compressing weights by itself (it does so for models above 1B parameters).
        main_export(
            str(src), output, task=task, ov_config=OVConfig(dtype=dtype),
            convert_tokenizer=False, trust_remote_code=ctx.trust_remote_code,
            local_files_only=True, library_name="transformers",
        )
    except (KeyboardInterrupt, UserError):
        raise
    except (ValueError, KeyError) as exc:
        raise UnsupportedError(
            f"optimum-intel cannot export {cfg.get('model_type')!r} for {task} ({stack.first_line(exc)})"
        ) from None
    except Exception as exc:
        raise BackendError(f"optimum-intel export failed: {stack.first_line(exc)}") from exc
    ctx.progress("converting the tokenizer with openvino-tokenizers", None, None)
    tok_facts = convert_tokenizer(src, output, ctx)
    xml = output / "openvino_model.xml"
    if not xml.exists():
        raise BackendError(f"optimum-intel wrote no openvino_model.xml into {output}")
    details = {
        "weights": dtype,
        "task": task,
        "architecture": (cfg.get("architectures") or [None])[0],
        "ir_bytes": stack.file_size(xml, xml.with_suffix(".bin")),
        "native_command": f"optimum-cli export openvino --model {src} --task {task} "
                          f"--weight-format {dtype} OUTPUT",
        **tok_facts,
    }
    return Artifact(path=output, format="openvino", entry="openvino_model.xml", details=details)


def convert_tokenizer(src: Path, output: Path, ctx: Context) -> dict[str, Any]:
    """Write openvino_tokenizer/detokenizer.xml so openvino-genai needs nothing else."""
    from openvino_tokenizers import convert_tokenizer as ov_convert
    from transformers import AutoTokenizer

    ov = stack.ov()
    try:
        hf_tok = AutoTokenizer.from_pretrained(str(src), trust_remote_code=ctx.trust_remote_code,
                                               local_files_only=True)
    except Exception as exc:
        raise UserError(f"the tokenizer in {src} cannot be loaded ({stack.first_line(exc)}); "
                        f"repair its tokenizer files") from None
    try:
        tok, detok = ov_convert(hf_tok, with_detokenizer=True, skip_special_tokens=True)
    except Exception as exc:
        raise BackendError(f"openvino-tokenizers cannot convert this tokenizer: {stack.first_line(exc)}") from exc
    ov.save_model(tok, str(output / "openvino_tokenizer.xml"))
    ov.save_model(detok, str(output / "openvino_detokenizer.xml"))
    return {"tokenizer": "openvino_tokenizer.xml", "detokenizer": "openvino_detokenizer.xml",
            "chat_template": bool(getattr(hf_tok, "chat_template", None))}


@job
def onnx_to_ir(source: Artifact, opts: Mapping[str, Any], output: Path, ctx: Context) -> Artifact:
    """Handler of ``convert onnx->openvino``; ``opts`` are parsed by the core
    (:data:`edgesmith_openvino.options.ONNX_OPTIONS`)."""
    dtype = IR_DTYPES[opts["dtype"]]
    path = Path(source.main_file)
    ctx.progress("converting ONNX to OpenVINO IR", None, None)
    ov = stack.ov()
    try:
        # No input= / output= arguments: names and shapes stay as the ONNX graph has them.
        model = ov.convert_model(str(path))
    except Exception as exc:
        raise UserError(f"{path} cannot be converted by OpenVINO ({stack.first_line(exc)}); "
                        f"check that it is a valid ONNX model") from None
    xml = output / "openvino_model.xml"
    ov.save_model(model, str(xml), compress_to_fp16=(dtype == "fp16"))
    # A tokenizer or preprocessor exported beside the ONNX file travels with the IR
    # (int8_ptq reads tokenizer.json to calibrate from text).
    side = stack.copy_side_files(source.directory, output)
    inputs = {p.get_any_name(): str(p.get_partial_shape()) for p in model.inputs}
    outputs = [p.get_any_name() for p in model.outputs]
    return Artifact(path=output, format="openvino", entry="openvino_model.xml", details={
        "weights": dtype, "inputs": inputs, "outputs": outputs, "side_files": side,
        "ir_bytes": stack.file_size(xml, xml.with_suffix(".bin")),
        "native_command": f"ovc {path} --output_model OUTPUT/openvino_model.xml"
                          + ("" if dtype == "fp16" else " --compress_to_fp16=False"),
    })


def optimum_exporter() -> tuple[Any, Any]:
    """optimum-intel's ``main_export`` and ``OVConfig``, imported only when an export runs."""
    try:
        from optimum.exporters.openvino import main_export
        from optimum.intel import OVConfig
    except ImportError as exc:
        raise UserError(f"Hugging Face export needs optimum-intel ({exc}), a dependency of "
                        f"edgesmith-openvino; reinstall it (edgesmith install openvino --upgrade)") from None
    return main_export, OVConfig
