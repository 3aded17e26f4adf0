"""The ``-O KEY=VALUE`` settings of every MLX operation.

Imported by ``plugin.py`` to declare the operations and by the operation
modules for names and defaults, so it stays light: ``edgesmith.options`` and
the pure-Python scheme tables only (no MLX, mlx-lm or numpy).
"""

from __future__ import annotations

from edgesmith.options import Option

from .schemes import MODES, MX_DTYPES, RECIPES

#: Fewest tokens per calibration sequence worth calibrating on.
MIN_TOKENS = 16

#: convert hf->mlx and mlx->mlx (``--dtype`` sets ``dtype``).
CONVERT = (
    Option("dtype", "dtype", "weights of the result (default: the checkpoint's dtype, else float16)",
           choices=tuple(MX_DTYPES)),
)

#: quantize hf->mlx and mlx->mlx.
QUANTIZE = (
    Option("mode", "choice", "quantization mode (same as --scheme)", choices=tuple(MODES)),
    Option("recipe", "choice", "mlx-lm's mixed-precision recipe (same as --scheme)", choices=tuple(RECIPES)),
    Option("dtype", "dtype", "dtype of the scales and unquantized weights (default: the model's, "
           "else float16)", choices=tuple(MX_DTYPES)),
    Option("indivisible", "choice", "a layer whose input size the group size does not divide: "
           "error, or skip it (leave it in float)", default="error", choices=("error", "skip")),
    Option("calibration_samples", "int", "calibration sequences (gptq/awq)", default=32, min=1, max=4096),
    Option("calibration_length", "int", "tokens per calibration sequence (gptq/awq)", default=256,
           min=MIN_TOKENS, max=32768),
)

#: load mlx.
LOAD = (
    Option("device", "choice", "gpu = Metal, Apple silicon only (default: MLX's default device)",
           choices=("cpu", "gpu")),
    Option("prefill_step", "int", "prompt tokens per prefill chunk", default=2048, min=1, max=65536),
    Option("dtype", "dtype", "compute dtype of the float weights; auto: float32 on the CPU, the "
           "model's own on the GPU", default="auto", choices=("auto", *MX_DTYPES)),
)
