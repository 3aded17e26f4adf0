"""Small facts read from a GGUF with the `gguf` package (no llama.cpp needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgesmith.errors import UserError

from .schemes import FLOAT_TENSOR_TYPES


def read(path: Path) -> Any:
    """A GGUFReader for ``path``; a truncated or foreign file is a UserError."""
    from gguf import GGUFReader

    try:
        return GGUFReader(str(path), "r")
    except Exception as e:  # noqa: BLE001 - the reader raises many kinds on bad files
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(
            f"{path} is not a readable GGUF file ({reason}); it may be truncated or corrupt, "
            f"re-download or re-convert it"
        ) from None


def field(reader: Any, key: str) -> Any:
    f = reader.fields.get(key)
    if f is None:
        return None
    try:
        return f.contents()
    except Exception:  # noqa: BLE001 - older gguf without contents()
        return None


def summary(path: Path) -> dict[str, Any]:
    r = read(path)
    types: dict[str, int] = {}
    for t in r.tensors:
        types[t.tensor_type.name] = types.get(t.tensor_type.name, 0) + 1
    return {
        "architecture": field(r, "general.architecture"),
        "file_type": field(r, "general.file_type"),
        "tensors": len(r.tensors),
        "tensor_types": types,
        "has_chat_template": field(r, "tokenizer.chat_template") is not None,
        "tokenizer_model": field(r, "tokenizer.ggml.model"),
        "pre_tokenizer": field(r, "tokenizer.ggml.pre"),
    }


def quantized_types(path: Path) -> list[str]:
    """Non-float types among the 2-D+ weights: non-empty means the file is already quantized."""
    r = read(path)
    return sorted({t.tensor_type.name for t in r.tensors
                   if len(t.shape) >= 2 and t.tensor_type.name not in FLOAT_TENSOR_TYPES})
