"""Data-aware quantization from the user's calibration text: mlx-lm's GPTQ
and AWQ, fed with our own token sequences (mlx-lm's scripts download a
calibration file from the internet; edgesmith never does)."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any

from edgesmith.calibration import read_text
from edgesmith.errors import UnsupportedError, UserError
from edgesmith.types import Context

from .options import MIN_TOKENS
from .schemes import QuantPlan

#: mlx-lm's defaults for layers GPTQ does not handle (embeddings): 6 bits, group 64.
GPTQ_FALLBACK = (6, 64)
#: mlx-lm's AWQ defaults for the embedding.
AWQ_EMBED = (4, 32)


def sequences(tokenizer: Any, path: Path, p: QuantPlan, seed: int = 123) -> Any:
    """A (samples, length) uint32 array of non-overlapping token windows."""
    import mlx.core as mx

    ids = tokenizer.encode(read_text(path), add_special_tokens=False)
    length = min(p.calibration_length, len(ids))
    if length < MIN_TOKENS:
        raise UserError(f"calibration text {path} has only {len(ids)} tokens; give at least "
                        f"{MIN_TOKENS} (a few paragraphs of text typical for the model)")
    n = len(ids) // length
    windows = mx.array(ids[: n * length], dtype=mx.uint32).reshape(n, length)
    mx.random.seed(seed)
    order = mx.random.permutation(n)[: p.calibration_samples]
    return windows[order]


def gptq(model: Any, tokenizer: Any, config: dict[str, Any], p: QuantPlan, calibration: Path,
         ctx: Context) -> tuple[Any, dict[str, Any]]:
    from mlx_lm.quant.gptq import gptq_quantize

    data = sequences(tokenizer, calibration, p)
    ctx.progress(f"GPTQ on {data.shape[0]} x {data.shape[1]} calibration tokens", None, None)
    with contextlib.redirect_stdout(sys.stderr):
        model, qconfig = gptq_quantize(model, data, p.bits, p.group_size, *GPTQ_FALLBACK)
    config["quantization"] = qconfig
    config["quantization_config"] = qconfig
    return model, config


def awq(model: Any, tokenizer: Any, config: dict[str, Any], p: QuantPlan, calibration: Path,
        ctx: Context) -> tuple[Any, dict[str, Any]]:
    from mlx_lm.quant.awq import AWQ_MODEL_CONFIGS, awq_quantize, update_config

    model_type = config.get("model_type")
    recipe = AWQ_MODEL_CONFIGS.get(model_type)
    if recipe is None:
        raise UnsupportedError(
            f"mlx-lm's AWQ has no recipe for {model_type} models (it has: "
            f"{', '.join(sorted(AWQ_MODEL_CONFIGS))}); use --method gptq"
        )
    data = sequences(tokenizer, calibration, p)
    ctx.progress(f"AWQ on {data.shape[0]} x {data.shape[1]} calibration tokens", None, None)
    with contextlib.redirect_stdout(sys.stderr):
        awq_quantize(model, data, recipe, group_size=p.group_size, bits=p.bits,
                     embed_group_size=AWQ_EMBED[1], embed_bits=AWQ_EMBED[0])
    config = update_config(model, config)
    # mlx-lm writes a placeholder default; make it state the requested scheme.
    config["quantization"].update(group_size=p.group_size, bits=p.bits)
    config["quantization_config"] = config["quantization"]
    return model, config
