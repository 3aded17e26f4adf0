"""GGUF -> Hugging Face checkpoint, through transformers' own GGUF loader.

transformers dequantizes every GGUF tensor type that the `gguf` package can
read, maps llama.cpp tensor names back to its own, and rebuilds a fast
tokenizer from the GGUF vocabulary. We save that as safetensors, then make
sure the chat template travels too.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgesmith.errors import UserError
from edgesmith.types import Artifact, Context

from . import ggufinfo
from .convert import check_options

OPTIONS = ("dtype",)
DTYPES = ("f16", "bf16", "f32")


def _supported_architectures() -> tuple[str, ...]:
    from transformers.integrations.ggml import GGUF_CONFIG_MAPPING

    return tuple(sorted(GGUF_CONFIG_MAPPING))


def gguf_to_hf(source: Artifact, options: Mapping[str, str], output: Path, ctx: Context) -> Artifact:
    check_options(options, OPTIONS)
    dtype = options.get("dtype", "f16").lower()
    if dtype not in DTYPES:
        raise UserError(f"dtype {dtype!r} cannot be written to a Hugging Face checkpoint here; "
                        f"choose one of {', '.join(DTYPES)}")
    path = source.main_file
    reader = ggufinfo.read(path)
    arch = ggufinfo.field(reader, "general.architecture")
    template = ggufinfo.field(reader, "tokenizer.chat_template")
    del reader
    ctx.progress("reading GGUF into transformers", 0, 3)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    supported = _supported_architectures()
    if arch not in supported:
        raise UserError(f"architecture {arch} cannot be turned back into a Hugging Face checkpoint: "
                        f"transformers reads GGUF only for {', '.join(supported)}")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = {"f16": torch.float16, "bf16": torch.bfloat16, "f32": torch.float32}[dtype]
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        ctx.progress("reading GGUF into transformers", 1, 3)
        model = _load_dense(AutoModelForCausalLM, path, torch_dtype)
    except (ValueError, KeyError, NotImplementedError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"transformers could not read {path} ({reason}); the quantization type or "
                        f"architecture may be unsupported by its GGUF loader") from None
    ctx.progress("writing safetensors", 2, 3)
    if template and not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = template
    model.save_pretrained(str(output), safe_serialization=True)
    tokenizer.save_pretrained(str(output))
    _ensure_template(output, template)
    ctx.progress("writing safetensors", 3, 3)
    return Artifact(path=output, format="hf", entry=None, details={
        "dtype": dtype,
        "gguf_architecture": arch,
        "hf_architecture": (model.config.architectures or [type(model).__name__])[0],
        "chat_template": bool(template),
        "loader": "transformers GGUF integration",
    })


def _load_dense(auto: Any, path: Path, torch_dtype: Any) -> Any:
    """A plain (unquantized) transformers model holding the GGUF's dequantized weights.

    transformers 5 keeps GGUF weights in their blocks behind a quantizer that refuses
    save_pretrained; we ask it to dequantize, then move the weights into a fresh model
    built from the same config so nothing of the GGUF loader remains attached.
    """
    try:
        from transformers import GgufConfig
    except ImportError:  # transformers without the GGUF quantizer dequantizes anyway
        GgufConfig = None
    kwargs: dict[str, Any] = {"gguf_file": path.name, "dtype": torch_dtype}
    if GgufConfig is not None:
        kwargs["quantization_config"] = GgufConfig(gguf_file=path.name, dequantize=True)
    loaded = auto.from_pretrained(str(path.parent), **kwargs)
    if getattr(loaded, "hf_quantizer", None) is None:
        return loaded
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    fresh = auto.from_config(config, dtype=torch_dtype)
    missing, unexpected = fresh.load_state_dict(loaded.state_dict(), strict=False)
    missing = [k for k in missing if k not in getattr(fresh, "_tied_weights_keys", {}) or {}]
    if unexpected or missing:
        raise UserError(f"transformers' GGUF loader gave weights that do not fit {type(fresh).__name__} "
                        f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    if hasattr(fresh, "tie_weights"):
        fresh.tie_weights()
    return fresh


def _ensure_template(output: Path, template: str | None) -> None:
    """transformers 5 may store the template in chat_template.jinja; either place is fine."""
    if not template:
        return
    if (output / "chat_template.jinja").exists():
        return
    cfg_path = output / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text()) if cfg_path.exists() else {}
    if not cfg.get("chat_template"):
        (output / "chat_template.jinja").write_text(template)
