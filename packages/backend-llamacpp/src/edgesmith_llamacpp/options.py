"""The ``-O KEY=VALUE`` settings of every llama.cpp operation.

Imported by ``plugin.py`` to declare the operations, so it stays light:
``edgesmith.options`` and the pure-Python scheme table only.
"""

from __future__ import annotations

from edgesmith.options import Option

from .schemes import CONVERT_DTYPES

#: Cap on the context allocated by default; the KV cache grows with it.
DEFAULT_MAX_CTX = 4096
#: Largest context accepted at all; a GGUF that declares its trained context
#: is held to that (see ``runner.load``).
MAX_CTX = 1 << 20

#: convert hf->gguf (``--dtype`` sets ``dtype``).
CONVERT_OPTIONS = (
    Option("dtype", "dtype", "weight type the converter writes (smaller types: convert to f16, "
           "then `edgesmith quantize`)", default="f16", choices=CONVERT_DTYPES),
)

#: convert gguf->hf.
EXPORT_OPTIONS = (
    Option("dtype", "dtype", "weight type of the safetensors written", default="f16",
           choices=("f16", "bf16", "f32")),
)

#: quantize gguf.
QUANTIZE_OPTIONS = (
    Option("pure", "bool", "every tensor in the scheme's base type (no K-quant mix)", default=False),
)

#: load gguf. The upper bounds tighten per model: n_ctx up to the trained
#: context, n_batch up to n_ctx.
LOAD_OPTIONS = (
    Option("n_ctx", "int", "context length to allocate (default: the trained context, capped at "
           f"{DEFAULT_MAX_CTX})", min=1, max=MAX_CTX),
    Option("n_batch", "int", "prompt tokens per decode call (default: 512, or n_ctx if smaller)",
           min=1, max=MAX_CTX),
    Option("kv_cache", "choice", "type of the KV cache: llama.cpp's f16, or f32 to run a full-precision "
           "GGUF without rounding the attention keys and values", default="f16", choices=("f16", "f32")),
    Option("repack", "choice", "llama.cpp's extra weight buffers (repacked/AMX layouts): auto is on, except on "
           "CPUs with AMX, where they crash at prefill with llama-cpp-python 0.3.36", default="auto",
           choices=("auto", "on", "off")),
)
