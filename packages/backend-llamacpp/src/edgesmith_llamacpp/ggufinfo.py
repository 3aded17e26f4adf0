"""Small facts read from a GGUF's metadata and tensor table (no llama.cpp needed).

Reads through :mod:`gguffile`, which parses the header directly: the `gguf`
package's reader takes seconds on a large vocabulary, and the runner reads
these facts on every load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgesmith import gguffile

from .schemes import FLOAT_TENSOR_TYPES


def read(path: Path) -> gguffile.Layout:
    """The file's layout; a truncated or foreign file is a one-line UserError."""
    return gguffile.read(Path(path))


def field(layout: gguffile.Layout, key: str) -> Any:
    return layout.values.get(key)


def _type_names(layout: gguffile.Layout) -> list[tuple[str, int]]:
    """(ggml type name, number of dimensions) per tensor."""
    from gguf import GGMLQuantizationType

    return [(GGMLQuantizationType(t).name, len(dims)) for _, dims, t, _ in layout.tensors]


def summary(path: Path) -> dict[str, Any]:
    r = read(path)
    types: dict[str, int] = {}
    for name, _ in _type_names(r):
        types[name] = types.get(name, 0) + 1
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
    return sorted({name for name, ndim in _type_names(read(path))
                   if ndim >= 2 and name not in FLOAT_TENSOR_TYPES})
