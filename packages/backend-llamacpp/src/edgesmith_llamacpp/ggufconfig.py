"""The model settings transformers' GGUF loader leaves out, read back from the GGUF.

transformers 5.7 builds a config from a GGUF's metadata through a fixed key
table. Several settings llama.cpp's converter writes are not in that table,
or are written as tensors, and the loader silently falls back to defaults;
the exported checkpoint then loads and runs but computes another model:

- Llama 3.x RoPE scaling (``rope_type: llama3``) becomes the ``rope_freqs``
  tensor of per-frequency divisors; the loader keeps plain RoPE.
- Phi-3.5 / Phi-4 LongRoPE becomes ``rope_factors_short``/``rope_factors_long``
  tensors plus ``rope.scaling.original_context_length`` and ``attn_factor``;
  Phi-4-mini's partial rotary width is ``rope.dimension_count``. The loader
  keeps plain full-width RoPE.
- ``attention.key_length`` (Qwen3's head_dim of 128 with hidden 1024) is not
  read: head_dim becomes hidden/heads and the weights no longer fit.
- Gemma 3's attention scale: the GGUF has no ``query_pre_attn_scalar``;
  llama.cpp scales queries by 1/sqrt(head_dim) (27B: hidden/heads), the loader
  sets transformers' default of 256.
- Linear RoPE scaling (``rope.scaling.type``/``factor``; Gemma 3 4B and larger
  on their full-attention layers) is not read.

:func:`repair` fixes the config before the weights are loaded into it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgesmith import gguffile
from edgesmith.errors import UserError

_F32, _F16 = 0, 1


def small_tensor(path: Path, layout: gguffile.Layout, name: str) -> np.ndarray | None:
    """A float32/float16 tensor of the GGUF as a float64 array (None if absent)."""
    for tname, dims, ggml_type, offset in layout.tensors:
        if tname != name:
            continue
        if ggml_type not in (_F32, _F16):
            raise UserError(f"{path}: tensor {name} has ggml type {ggml_type}; only f32/f16 are read")
        count = int(np.prod(dims)) if dims else 1
        dtype = np.float32 if ggml_type == _F32 else np.float16
        with open(path, "rb") as f:
            f.seek(layout.data_start + offset)
            return np.fromfile(f, dtype=dtype, count=count).astype(np.float64)
    return None


def llama3_divisors(theta: float, dim: int, factor: float, low: float, high: float, original: int) -> np.ndarray:
    """What llama.cpp's converter writes as ``rope_freqs`` for these Llama 3 RoPE settings."""
    inv = 1.0 / theta ** (np.arange(0, dim, 2, dtype=np.float64) / dim)
    wavelen = 2 * math.pi / inv
    low_wl, high_wl = original / low, original / high
    out = np.ones_like(inv)
    out[wavelen > low_wl] = factor
    mid = (wavelen <= low_wl) & (wavelen >= high_wl)
    smooth = (original / wavelen[mid] - low) / (high - low)
    out[mid] = 1 / ((1 - smooth) / factor + smooth)
    return out


def llama3_parameters(divisors: np.ndarray, theta: float, dim: int) -> dict[str, Any]:
    """Llama 3 RoPE parameters that reproduce ``divisors`` (``rope_freqs``) exactly.

    The converter keeps only the per-frequency divisors; every published Llama 3.x
    has low/high frequency factors 1 and 4 and an original context of 8192, so
    those are tried first, then other powers of two."""
    factor = float(np.float32(divisors.max()))
    originals = [8192] + [2 ** k for k in range(10, 21) if 2 ** k != 8192]
    for low, high in ((1.0, 4.0), (1.0, 2.0), (1.0, 8.0), (2.0, 4.0), (2.0, 8.0)):
        for original in originals:
            if np.allclose(llama3_divisors(theta, dim, factor, low, high, original), divisors,
                           rtol=1e-5, atol=1e-6):
                return {"rope_type": "llama3", "rope_theta": theta, "factor": factor, "low_freq_factor": low,
                        "high_freq_factor": high, "original_max_position_embeddings": original}
    raise UserError("the GGUF's rope_freqs divisors match no Llama 3 RoPE scaling (factor, low/high "
                    "frequency factors, original context); the checkpoint would compute another "
                    "model, so it is not written")


def repair(config: Any, meta: Mapping[str, Any], path: Path, layout: gguffile.Layout) -> list[str]:
    """Set on ``config`` (a transformers config built from the GGUF) what the loader
    missed; the names of the settings changed."""
    arch = meta.get("general.architecture")
    changed: list[str] = []

    def key(name: str) -> Any:
        return meta.get(f"{arch}.{name}")

    heads = config.num_attention_heads
    head_dim = key("attention.key_length")
    if isinstance(head_dim, int) and head_dim != getattr(config, "head_dim", None) and \
            hasattr(config, "head_dim"):
        config.head_dim = head_dim
        changed.append("head_dim")
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    params = dict(getattr(config, "rope_parameters", None) or {})
    theta = key("rope.freq_base")

    if arch == "llama":
        divisors = small_tensor(path, layout, "rope_freqs.weight")
        if divisors is not None:
            dim = int(key("rope.dimension_count") or head_dim)
            config.rope_parameters = llama3_parameters(divisors, float(theta or params.get("rope_theta")), dim)
            changed.append("rope_parameters (llama3, from rope_freqs)")
    elif arch == "phi3":
        short = small_tensor(path, layout, "rope_factors_short.weight")
        long = small_tensor(path, layout, "rope_factors_long.weight")
        dims = key("rope.dimension_count")
        partial = float(dims) / head_dim if isinstance(dims, int) else 1.0
        original = key("rope.scaling.original_context_length")
        if short is not None and long is not None and original:
            rope = {"rope_type": "longrope", "type": "longrope", "rope_theta": float(theta or 10000.0),
                    "short_factor": [float(np.float32(x)) for x in short],
                    "long_factor": [float(np.float32(x)) for x in long],
                    "original_max_position_embeddings": int(original), "partial_rotary_factor": partial}
            attn = key("rope.scaling.attn_factor")
            scale = config.max_position_embeddings / int(original)
            implied = math.sqrt(1 + math.log(scale) / math.log(int(original))) if scale > 1 else 1.0
            if isinstance(attn, float) and abs(attn - implied) > 1e-5:
                rope["attention_factor"] = attn
            config.rope_parameters = rope
            config.original_max_position_embeddings = int(original)
            changed.append("rope_parameters (longrope, from rope_factors_short/long)")
        elif partial != 1.0:
            config.rope_parameters = {**params, "partial_rotary_factor": partial}
        if partial != 1.0:
            config.partial_rotary_factor = partial
            changed.append("partial_rotary_factor")
        window = key("attention.sliding_window")
        if isinstance(window, int) and window > 0 and getattr(config, "sliding_window", None) != window:
            config.sliding_window = window
            changed.append("sliding_window")
    if key("rope.scaling.type") == "linear" and isinstance(key("rope.scaling.factor"), float) \
            and arch != "phi3":
        # Linear scaling (Gemma 3 4B and larger, on the full-attention layers only).
        linear = {"rope_type": "linear", "factor": float(key("rope.scaling.factor"))}
        params = dict(getattr(config, "rope_parameters", None) or {})
        if isinstance(params.get("full_attention"), dict):
            params["full_attention"] = {**params["full_attention"], **linear}
        else:
            params = {**params, **linear}
        if params != getattr(config, "rope_parameters", None):
            config.rope_parameters = params
            changed.append("rope_parameters (linear scaling)")
    if arch == "gemma3":
        # llama.cpp: f_attention_scale = 1/sqrt(n_embd_head_k), 1/sqrt(n_embd/n_head) for the 27B.
        layers = key("block_count")
        scalar = config.hidden_size // heads if layers == 62 else head_dim
        if getattr(config, "query_pre_attn_scalar", None) != scalar:
            config.query_pre_attn_scalar = scalar
            changed.append("query_pre_attn_scalar")
    return changed
