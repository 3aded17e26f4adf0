"""Fixtures for the Olive backend tests.

Everything runs the real Olive / ONNX Runtime / onnxruntime-genai stack on
tiny checkpoints made on the spot. The whole session runs with the hub
clients offline and a guard that fails any non-loopback connect or DNS
lookup, so a job that reaches for the network (a hub dataset, telemetry)
fails the test instead of passing silently.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edgesmith import api, offline
from edgesmith.testing import tiny_checkpoint
from edgesmith.testing.fixtures import network_guard
from edgesmith_olive.offline import OLIVE_ENV

ARCHS = ("llama", "qwen2", "phi3")
#: Layer widths that differ from the vocabulary size. With the factory's defaults
#: (intermediate 512 == vocab 512, Phi-3 fused qkv 512) the GenAI builder takes
#: MLP/attention layers for the LM head; edgesmith-olive refuses such models.
TINY_SIZES = {"intermediate_size": 768, "vocab_size": 384}


@pytest.fixture(scope="session", autouse=True)
def no_network() -> Iterator[None]:
    """The kit's offline environment (with Olive's switch) and network guard for
    the whole session, so session-scoped fixtures are covered too; every refused
    attempt is recorded in the kit's ``network_attempts``."""
    with pytest.MonkeyPatch.context() as mp:
        for key, value in offline.environment(OLIVE_ENV).items():
            mp.setenv(key, value)
        with network_guard():
            yield


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    cache: dict[str, Path] = {}

    def make(arch: str = "llama") -> Path:
        if arch not in cache:
            cache[arch] = tiny_checkpoint(tmp_path_factory.mktemp(f"tiny-{arch}"), arch, **TINY_SIZES)
        return cache[arch]

    return make


@pytest.fixture(scope="session")
def bundles(tmp_path_factory: pytest.TempPathFactory, tiny: Callable[[str], Path]) -> Callable[..., Path]:
    """``bundles(arch, kind)``: the fp32 bundle ("onnx") or its int4 RTN bundle ("int4"), built once."""
    cache: dict[tuple[str, str], Path] = {}

    def make(arch: str = "llama", kind: str = "onnx") -> Path:
        key = (arch, kind)
        if key in cache:
            return cache[key]
        root = tmp_path_factory.mktemp(f"bundle-{arch}-{kind}")
        if kind == "onnx":
            api.convert(tiny(arch), to="onnx", output=root / "model", backend="olive")
        elif kind == "int4":
            api.quantize(make(arch, "onnx"), root / "model", bits=4, backend="olive")
        else:
            raise AssertionError(kind)
        cache[key] = root / "model"
        return cache[key]

    return make


@pytest.fixture
def clean_env() -> dict[str, str]:
    """Environment for subprocesses: offline, and no edgesmith on the path needed."""
    return offline.child_env(extra=OLIVE_ENV)
