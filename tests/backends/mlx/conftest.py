"""Shared fixtures for the MLX backend tests: tiny checkpoints converted and
quantized once per session with the real mlx-lm (CPU build on Linux)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

pytest.importorskip("mlx_lm", reason="edgesmith-mlx is not installed with its stack")

from edgesmith import api  # noqa: E402

# tiny_model and the autouse `offline` guard come from tests/conftest.py
# (pytest_plugins = ["edgesmith.testing.fixtures"]).

ARCHS = ("llama", "qwen2", "phi3")


@pytest.fixture(scope="session")
def mlx_f16(tiny_model, tmp_path_factory) -> Callable[[str], Path]:
    """``mlx_f16(arch)``: the tiny checkpoint converted to a float16 MLX directory."""
    cache: dict[str, Path] = {}

    def make(arch: str) -> Path:
        if arch not in cache:
            out = tmp_path_factory.mktemp(f"mlx-{arch}") / "f16"
            api.convert(tiny_model(arch), "mlx", out, backend="mlx", dtype="float16")
            cache[arch] = out
        return cache[arch]

    return make


@pytest.fixture(scope="session")
def mlx_q4(mlx_f16, tmp_path_factory) -> Callable[[str], Path]:
    """``mlx_q4(arch)``: the float16 MLX model quantized to 4-bit, group 64."""
    cache: dict[str, Path] = {}

    def make(arch: str) -> Path:
        if arch not in cache:
            out = tmp_path_factory.mktemp(f"mlx-{arch}") / "q4g64"
            api.quantize(mlx_f16(arch), out, bits=4, group_size=64, backend="mlx")
            cache[arch] = out
        return cache[arch]

    return make
