"""Hugging Face encoder -> OpenVINO IR for feature extraction (optimum-intel), fixed shape.

optimum-intel's ``feature-extraction`` task exports the bare encoder
(``last_hidden_state``); the IR is then reshaped to batch 1 and
``seq_len`` tokens, so every device (NPU included) compiles one static
graph and the runner pads to it. No OpenVINO tokenizer IR is written: the
runner tokenizes with tokenizer.json (:mod:`edgesmith.encoders`), and an IR
folder with a tokenizer IR is taken for an openvino-genai LLM.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgesmith.encoders import ENCODER_TYPES, copy_encoder_files
from edgesmith.errors import BackendError, UnsupportedError, UserError
from edgesmith.types import Artifact, Context
from edgesmith.weights import check_tokenizer

from . import stack
from .convert import _hf_config, optimum_exporter
from .options import IR_DTYPES
from .patches import job

TASK = "feature-extraction"
XML = "openvino_model.xml"


@job
def hf_encoder_to_ir(source: Artifact, opts: Mapping[str, Any], output: Path, ctx: Context) -> Artifact:
    """Handler of ``convert hf->openvino (encoder)``; ``opts`` are parsed by the core
    (:data:`edgesmith_openvino.options.ENCODER_OPTIONS`)."""
    src = Path(source.path)
    cfg = _hf_config(src)
    kind = cfg.get("model_type")
    if kind not in ENCODER_TYPES:
        raise UserError(f"{src} is a {kind} model, not an encoder; convert causal LMs with the text "
                        f"generation route (no -O seq_len)")
    if not (src / "tokenizer.json").is_file():
        raise UserError(f"{src} has no tokenizer.json (the fast tokenizer edgesmith runs encoders with); "
                        f"save one with transformers' AutoTokenizer.save_pretrained")
    check_tokenizer(src)
    dtype, seq_len = IR_DTYPES[opts["dtype"]], int(opts["seq_len"])
    limit = cfg.get("max_position_embeddings")
    if isinstance(limit, int) and seq_len > limit:
        raise UserError(f"-O seq_len={seq_len} is longer than the model's {limit} positions; "
                        f"give -O seq_len={limit} or less")
    ctx.progress("loading optimum-intel", None, None)
    stack.quiet()
    main_export, OVConfig = optimum_exporter()
    ctx.progress(f"exporting {kind} for {TASK} ({dtype})", None, None)
    try:
        main_export(str(src), output, task=TASK, ov_config=OVConfig(dtype=dtype), convert_tokenizer=False,
                    trust_remote_code=ctx.trust_remote_code, local_files_only=True,
                    library_name="transformers")
    except (KeyboardInterrupt, UserError):
        raise
    except (ValueError, KeyError) as exc:
        raise UnsupportedError(f"optimum-intel cannot export {kind!r} for {TASK} ({stack.first_line(exc)})") from None
    except Exception as exc:
        raise BackendError(f"optimum-intel export failed: {stack.first_line(exc)}") from exc
    xml = output / XML
    if not xml.exists():
        raise BackendError(f"optimum-intel wrote no {XML} into {output}")
    ctx.progress(f"fixing the shape to 1x{seq_len}", None, None)
    ov = stack.ov()
    model = stack.read_model(xml)
    model.reshape({port.get_any_name(): [1, seq_len] for port in model.inputs})
    fixed = output / "fixed.xml"
    ov.save_model(model, str(fixed), compress_to_fp16=(dtype == "fp16"))
    del model
    xml.unlink()
    xml.with_suffix(".bin").unlink()
    fixed.rename(xml)
    fixed.with_suffix(".bin").rename(xml.with_suffix(".bin"))
    # optimum saves the tokenizer's own files; the pooling configuration is edgesmith's to keep.
    side = copy_encoder_files(src, output)
    model = stack.read_model(xml)
    return Artifact(path=output, format="openvino", entry=XML, details={
        "weights": dtype, "task": TASK, "model_type": kind, "seq_len": seq_len, "batch": 1,
        "inputs": {p.get_any_name(): str(p.get_partial_shape()) for p in model.inputs},
        "outputs": [p.get_any_name() for p in model.outputs], "side_files": side,
        "ir_bytes": stack.file_size(xml, xml.with_suffix(".bin")),
        "native_command": f"optimum-cli export openvino --model {src} --task {TASK} --weight-format {dtype} "
                          f"OUTPUT (then reshape to [1,{seq_len}])"})
