"""Fixtures for the Olive backend tests.

Everything runs the real Olive / ONNX Runtime / onnxruntime-genai stack on
tiny checkpoints made on the spot. The whole session runs with the hub
clients offline and a guard that fails any non-loopback connect or DNS
lookup, so a job that reaches for the network (a hub dataset, telemetry)
fails the test instead of passing silently.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from edgesmith import api
from edgesmith.testing import tiny_checkpoint

ARCHS = ("llama", "qwen2", "phi3")
#: Layer widths that differ from the vocabulary size. With the factory's defaults
#: (intermediate 512 == vocab 512, Phi-3 fused qkv 512) the GenAI builder takes
#: MLP/attention layers for the LM head; edgesmith-olive refuses such models.
TINY_SIZES = {"intermediate_size": 768, "vocab_size": 384}
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "OLIVE_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
}

#: Every refused network attempt of the session, for the no-network test.
NETWORK_ATTEMPTS: list[str] = []


def _local_host(host: Any) -> bool:
    if host in (None, "", "localhost"):
        return True
    if isinstance(host, bytes):
        host = host.decode()
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


@pytest.fixture(scope="session", autouse=True)
def no_network() -> Iterator[None]:
    """Refuse non-loopback connects and DNS lookups for the whole session."""
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def check(address: Any) -> None:
        if isinstance(address, tuple) and address and not _local_host(address[0]):
            NETWORK_ATTEMPTS.append(f"connect {address!r}")
            raise OSError(f"olive tests: network access to {address!r} attempted (tests run offline)")

    def connect(self: socket.socket, address: Any) -> Any:
        check(address)
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> Any:
        check(address)
        return real_connect_ex(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not _local_host(host):
            NETWORK_ATTEMPTS.append(f"dns {host!r}")
            raise socket.gaierror(f"olive tests: DNS lookup of {host!r} attempted (tests run offline)")
        return real_getaddrinfo(host, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        for key, value in OFFLINE_ENV.items():
            mp.setenv(key, value)
        mp.setattr(socket.socket, "connect", connect)
        mp.setattr(socket.socket, "connect_ex", connect_ex)
        mp.setattr(socket, "getaddrinfo", getaddrinfo)
        yield


@pytest.fixture(scope="session")
def network_attempts() -> list[str]:
    """Network accesses the guard refused so far in this session."""
    return NETWORK_ATTEMPTS


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
    return {**os.environ, **OFFLINE_ENV}
