"""pytest plugin for edgesmith tests: ``pytest_plugins = ["edgesmith.testing.fixtures"]``.

- ``tiny_model(arch="llama", **sizes)`` builds a tiny checkpoint once per
  session and returns its path.
- ``offline`` (autouse) makes every hub client work offline and refuses any
  socket connection outside the loopback range and any DNS lookup of a
  non-local name, so a test that would reach
  the network fails loudly instead of hanging.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .tiny import tiny_checkpoint

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
}


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    cache: dict[tuple, Path] = {}

    def make(arch: str = "llama", **sizes: Any) -> Path:
        key = (arch, tuple(sorted(sizes.items())))
        if key not in cache:
            cache[key] = tiny_checkpoint(tmp_path_factory.mktemp(f"tiny-{arch}"), arch, **sizes)
        return cache[key]

    return make


def _loopback(address: Any) -> bool:
    if isinstance(address, tuple) and address:
        host = address[0]
    else:
        return True  # AF_UNIX paths and the like stay local
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: resolving it would already use the network


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key, value in OFFLINE_ENV.items():
        monkeypatch.setenv(key, value)
    real_connect = socket.socket.connect

    def guarded(self: socket.socket, address: Any) -> Any:
        if not _loopback(address):
            raise OSError(f"edgesmith tests: network access to {address!r} attempted (tests run offline)")
        return real_connect(self, address)

    def guarded_ex(self: socket.socket, address: Any) -> Any:
        if not _loopback(address):
            raise OSError(f"edgesmith tests: network access to {address!r} attempted (tests run offline)")
        return real_connect_ex(self, address)

    def guarded_lookup(host: Any, *args: Any, **kwargs: Any) -> Any:
        # DNS is how most telemetry starts; only local names may resolve.
        name = host.decode() if isinstance(host, bytes) else host
        if name not in (None, "localhost", "") and not _loopback((name,)):
            raise OSError(f"edgesmith tests: DNS lookup of {name!r} attempted (tests run offline)")
        return real_lookup(host, *args, **kwargs)

    real_connect_ex = socket.socket.connect_ex
    real_lookup = socket.getaddrinfo
    monkeypatch.setattr(socket.socket, "connect", guarded)
    monkeypatch.setattr(socket.socket, "connect_ex", guarded_ex)
    monkeypatch.setattr(socket, "getaddrinfo", guarded_lookup)
    yield


def env_offline() -> dict[str, str]:
    """The environment for a subprocess that must stay offline."""
    return {**os.environ, **OFFLINE_ENV}
