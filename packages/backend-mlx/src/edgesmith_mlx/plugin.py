"""What the MLX backend declares: its operations, their options and handlers.

Importing this module never imports MLX, mlx-lm or numpy; each handler is
named as ``"module:function"`` and imported only when its operation runs.
"""

from __future__ import annotations

import platform
import sys
from importlib import metadata

from edgesmith.hookspecs import hookimpl
from edgesmith.types import BackendInfo, Operation

from . import __version__

# The hooks beyond edgesmith_backend: optimize targets, doctor's rule, deploy commands.
from .contrib import edgesmith_deploy_commands, edgesmith_doctor_rules, edgesmith_optimize_targets  # noqa: F401
from .options import CONVERT, LOAD, QUANTIZE
from .schemes import SCHEMES

NAME = "mlx"


def _apple_silicon() -> bool:
    return sys.platform == "darwin" and platform.machine() == "arm64"


def _check() -> str | None:
    """Usable here? Reads installed-distribution metadata only (no import)."""
    if sys.platform == "darwin" and not _apple_silicon():
        return "MLX needs Apple silicon on macOS (Intel Macs are not supported)"
    if sys.platform not in ("darwin", "linux"):
        return f"MLX runs on macOS (Apple silicon) and Linux, not {sys.platform}"
    wanted = ["mlx", "mlx-lm"]
    if sys.platform == "darwin":
        wanted.append("mlx-metal")
    missing = []
    for dist in wanted:
        try:
            metadata.version(dist)
        except metadata.PackageNotFoundError:
            missing.append(dist)
    if missing:
        return f"{', '.join(missing)} not installed; pip install edgesmith-mlx"
    if sys.platform == "linux":
        # Plain `mlx` on Linux has no compute library; one of these provides it.
        for dist in ("mlx-cpu", "mlx-cuda-12", "mlx-cuda-13"):
            try:
                metadata.version(dist)
                return None
            except metadata.PackageNotFoundError:
                continue
        return "MLX on Linux needs its CPU build; pip install 'mlx[cpu]'"
    return None


#: What hf -> MLX takes, held to transformers by the architecture matrix
#: (tests/backends/mlx/test_architectures.py) with mlx-lm 0.32.2 (pins.txt); model_type names.
ARCHITECTURES = ("llama", "qwen2", "qwen3", "gemma3_text", "phi3")
UNSUPPORTED = {"bert": "mlx-lm converts causal language models only"}


def operations() -> tuple[Operation, ...]:
    """Every operation, in the order ``edgesmith backends mlx`` lists them."""
    convert, quantize = "edgesmith_mlx.convert:convert", "edgesmith_mlx.quantize:quantize"
    return (
        Operation("convert", "hf", convert, format="mlx", options=CONVERT, architectures=ARCHITECTURES,
                  unsupported=UNSUPPORTED,
                  summary="Hugging Face safetensors checkpoint to an MLX directory (f16, bf16, f32)"),
        Operation("convert", "mlx", convert, options=CONVERT,
                  summary="change the dtype of an MLX model, or dequantize a quantized one"),
        # hf -> mlx in one step is what mlx_lm.convert -q does; mlx -> mlx
        # quantizes a float MLX directory (a quantized one must be dequantized).
        Operation("quantize", "hf", quantize, format="mlx", options=QUANTIZE, schemes=SCHEMES,
                  architectures=ARCHITECTURES, unsupported=UNSUPPORTED,
                  summary="a Hugging Face checkpoint straight to quantized MLX: 2-8 bit affine, "
                  "mxfp4/nvfp4/mxfp8, mixed recipes; gptq/awq from --calibration text"),
        Operation("quantize", "mlx", quantize, options=QUANTIZE, schemes=SCHEMES,
                  summary="a float MLX model: 2-8 bit affine, mxfp4/nvfp4/mxfp8, mixed recipes; "
                  "gptq/awq from --calibration text"),
        # mlx-lm could also run a float HF checkpoint directly, but declaring
        # "load hf" would make MLX the default runner of every HF directory; convert first.
        Operation("load", "mlx", "edgesmith_mlx.runner:load", options=LOAD,
                  devices=("cpu", "gpu") if _apple_silicon() else ("cpu",),
                  summary="generate and score with mlx-lm (Metal on Apple silicon, CPU on Linux)"),
    )


@hookimpl
def edgesmith_backend() -> BackendInfo:
    return BackendInfo(
        name=NAME,
        version=__version__,
        summary="Apple MLX via mlx-lm: MLX safetensors, 2-8 bit affine and mxfp4/nvfp4/mxfp8; "
        "Metal on Apple silicon, CPU on Linux",
        operations=operations(),
        libraries=("mlx", "mlx-lm", "mlx-cpu", "mlx-metal", "transformers"),
        notes={
            "compile": "MLX has no ahead-of-time compile artifact: it compiles kernels lazily at "
            "run time, so the MLX directory from convert/quantize is what you deploy",
        },
        check=_check,
    )
