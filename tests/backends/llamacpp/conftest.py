"""Shared fixtures for the llama.cpp backend tests: tiny checkpoints converted
to GGUF once per session with the real converter and llama.cpp."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

pytest.importorskip("llama_cpp", reason="edgesmith-llamacpp is not installed with its stack")

from edgesmith import api  # noqa: E402
from edgesmith.testing import tiny as tiny_mod  # noqa: E402

ARCHS = ("llama", "qwen2")


@pytest.fixture(scope="session", autouse=True)
def _direct_llama_loads_as_edgesmith_loads():
    """The tests that call llama-cpp-python directly load as edgesmith does (repack auto:
    extra buffers off on AMX CPUs, where llama.cpp's AMX buffers crash at prefill)."""
    from edgesmith_llamacpp.runner import extra_buffers, repack_wanted

    with extra_buffers(repack_wanted("auto")):
        yield


@pytest.fixture(scope="session")
def gguf_of(tiny_model, tmp_path_factory) -> Callable[..., Path]:
    """``gguf_of(arch, dtype="f16")``: the tiny checkpoint converted to GGUF (a directory)."""
    cache: dict[tuple[str, str], Path] = {}

    def make(arch: str = "llama", dtype: str = "f16") -> Path:
        key = (arch, dtype)
        if key not in cache:
            out = tmp_path_factory.mktemp(f"gguf-{arch}-{dtype}") / "out"
            api.convert(tiny_model(arch), "gguf", out, backend="llamacpp", dtype=dtype)
            cache[key] = out
        return cache[key]

    return make


@pytest.fixture(scope="session")
def quantized_of(gguf_of, tmp_path_factory) -> Callable[..., Path]:
    """``quantized_of(arch, scheme)``: the f16 GGUF quantized with llama.cpp."""
    cache: dict[tuple[str, str], Path] = {}

    def make(arch: str = "llama", scheme: str = "Q4_K_M") -> Path:
        key = (arch, scheme)
        if key not in cache:
            out = tmp_path_factory.mktemp(f"q-{arch}-{scheme}") / "out"
            api.quantize(gguf_of(arch), out, scheme=scheme, backend="llamacpp")
            cache[key] = out
        return cache[key]

    return make


@pytest.fixture(scope="session")
def calibration(tmp_path_factory) -> Path:
    """Plain calibration text: the corpus the tiny tokenizer was trained on (several chunks)."""
    path = tmp_path_factory.mktemp("calib") / "calibration.txt"
    text = tiny_mod.corpus_text()
    path.write_text((text + "\n") * max(1, 12000 // max(1, len(text))))
    return path
