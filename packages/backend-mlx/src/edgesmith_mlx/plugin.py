"""edgesmith hooks for MLX. Importing this module never imports MLX or mlx-lm."""

from __future__ import annotations

import platform
import sys
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path

from edgesmith.hookspecs import hookimpl
from edgesmith.types import Artifact, BackendInfo, Context, QuantSpec

from . import __version__
from .schemes import SCHEMES

NAME = "mlx"
_SOURCES = ("hf", "mlx")


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


@hookimpl
def edgesmith_backend() -> BackendInfo:
    return BackendInfo(
        name=NAME,
        version=__version__,
        summary="Apple MLX via mlx-lm: MLX safetensors, 2-8 bit affine and mxfp4/nvfp4/mxfp8; "
        "Metal on Apple silicon, CPU on Linux",
        converts=[("hf", "mlx"), ("mlx", "mlx")],
        # hf -> mlx in one step is what mlx_lm.convert -q does; mlx -> mlx
        # quantizes a float MLX directory (a quantized one must be dequantized).
        quantizes=[("hf", "mlx"), ("mlx", "mlx")],
        # mlx-lm could also run a float HF checkpoint directly, but claiming
        # "hf" would make MLX the default runner of every HF directory; convert first.
        runs=["mlx"],
        schemes=SCHEMES,
        devices=("cpu", "gpu") if _apple_silicon() else ("cpu",),
        libraries=("mlx", "mlx-lm", "mlx-cpu", "mlx-metal", "transformers"),
        notes={
            "compile": "MLX has no ahead-of-time compile artifact: it compiles kernels lazily at "
            "run time, so the MLX directory from convert/quantize is what you deploy",
        },
        check=_check,
    )


@hookimpl
def edgesmith_convert(source: Artifact, target: str, options: Mapping[str, str], output: Path,
                      ctx: Context) -> Artifact | None:
    if target != "mlx" or source.format not in _SOURCES:
        return None
    from .convert import convert

    return convert(source, options, output, ctx)


@hookimpl
def edgesmith_quantize(source: Artifact, spec: QuantSpec, options: Mapping[str, str], output: Path,
                       ctx: Context) -> Artifact | None:
    if source.format not in _SOURCES:
        return None
    from .quantize import quantize

    return quantize(source, spec, options, output, ctx)


@hookimpl
def edgesmith_run(artifact: Artifact, options: Mapping[str, str], ctx: Context):
    if artifact.format != "mlx":
        return None
    from .runner import load

    return load(artifact, options, ctx)
