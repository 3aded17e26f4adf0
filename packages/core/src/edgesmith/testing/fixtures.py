"""pytest plugin for edgesmith tests: ``pytest_plugins = ["edgesmith.testing.fixtures"]``.

- ``tiny_model(arch="llama", **sizes)`` builds a tiny checkpoint once per
  session and returns its path.
- ``arch_model(arch, **options)`` does the same for the architecture matrix
  (:data:`edgesmith.testing.archs.ARCHITECTURES`: Llama 3.2, Qwen2.5, Qwen3,
  Gemma 3, Phi-3.5, Phi-4-mini, SmolLM2), faithful to the published configs,
  in a directory named ``checkpoint``.
- ``offline`` (autouse) sets :data:`edgesmith.offline.OFFLINE_ENV` and
  refuses any socket connection outside the loopback range and any DNS
  lookup of a non-local name, so a test that would reach the network fails
  loudly instead of hanging.
- ``network_attempts``: every access the guard refused in this session, in
  order (``"connect ('192.0.2.1', 80)"``, ``"dns 'example.invalid'"``), so a
  test can assert that a job never even tried, including where the vendor
  code swallowed the error.
- :func:`network_guard` is the same guard as a context manager, for a
  conftest that wants it around session-scoped fixtures as well.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ..offline import OFFLINE_ENV, child_env
from .archs import arch_checkpoint
from .tiny import tiny_checkpoint

__all__ = ["NETWORK_ATTEMPTS", "OFFLINE_ENV", "env_offline", "network_guard"]

#: Every network access a guard refused in this session, oldest first. A test
#: that makes a deliberate attempt removes its own entries afterwards.
NETWORK_ATTEMPTS: list[str] = []


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    cache: dict[tuple, Path] = {}

    def make(arch: str = "llama", **sizes: Any) -> Path:
        key = (arch, tuple(sorted(sizes.items())))
        if key not in cache:
            cache[key] = tiny_checkpoint(tmp_path_factory.mktemp(f"tiny-{arch}"), arch, **sizes)
        return cache[key]

    return make


@pytest.fixture(scope="session")
def arch_model(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    cache: dict[tuple, Path] = {}

    def make(arch: str, **options: Any) -> Path:
        key = (arch, tuple(sorted(options.items())))
        if key not in cache:
            # A neutral directory name, like a hub snapshot's: converters that read the
            # model's name from it (llama.cpp's) get no hint from the architecture's name.
            cache[key] = arch_checkpoint(tmp_path_factory.mktemp(f"arch-{arch}") / "checkpoint", arch, **options)
        return cache[key]

    return make


@pytest.fixture(scope="session")
def arch_conversion(arch_model: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Any]:
    """``arch_conversion(arch, fmt, backend, **kwargs)``: ``arch_model(arch)`` converted to
    ``fmt`` by ``backend`` (``edgesmith.api.convert`` keyword arguments), once per session."""
    cache: dict[tuple, Any] = {}

    def make(arch: str, fmt: str, backend: str, **kwargs: Any) -> Any:
        from ..api import convert

        key = (arch, fmt, backend, tuple(sorted(kwargs.items())))
        if key not in cache:
            out = tmp_path_factory.mktemp(f"{fmt}-{arch}") / fmt
            cache[key] = convert(arch_model(arch), fmt, out, backend=backend, **kwargs)
        return cache[key]

    return make


def _local(host: Any) -> bool:
    """A loopback address or a name that resolves without the network."""
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    if host in (None, "", "localhost"):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False  # a host name: resolving it would already use the network


def _local_address(address: Any) -> bool:
    if isinstance(address, tuple) and address:
        return _local(address[0])
    return True  # AF_UNIX paths and the like stay on this machine


@contextlib.contextmanager
def network_guard() -> Iterator[list[str]]:
    """For the block, refuse every non-loopback ``connect``/``connect_ex`` and
    every DNS lookup of a non-local name, recording each in
    :data:`NETWORK_ATTEMPTS` (which it yields) before raising. The refusal
    happens before the real call, so nothing ever leaves the machine."""
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def refuse(address: Any) -> None:
        NETWORK_ATTEMPTS.append(f"connect {address!r}")
        raise OSError(f"edgesmith tests: network access to {address!r} attempted (tests run offline)")

    def connect(self: socket.socket, address: Any) -> Any:
        if not _local_address(address):
            refuse(address)
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> Any:
        if not _local_address(address):
            refuse(address)
        return real_connect_ex(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        # DNS is how most telemetry starts; only local names may resolve.
        if not _local(host):
            NETWORK_ATTEMPTS.append(f"dns {host!r}")
            raise socket.gaierror(f"edgesmith tests: DNS lookup of {host!r} attempted (tests run offline)")
        return real_getaddrinfo(host, *args, **kwargs)

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    socket.getaddrinfo = getaddrinfo
    try:
        yield NETWORK_ATTEMPTS
    finally:
        socket.socket.connect = real_connect  # type: ignore[method-assign]
        socket.socket.connect_ex = real_connect_ex  # type: ignore[method-assign]
        socket.getaddrinfo = real_getaddrinfo


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key, value in OFFLINE_ENV.items():
        monkeypatch.setenv(key, value)
    with network_guard():
        yield


@pytest.fixture(scope="session")
def network_attempts() -> list[str]:
    """Network accesses the guard refused so far in this session."""
    return NETWORK_ATTEMPTS


def env_offline() -> dict[str, str]:
    """The environment for a subprocess that must stay offline."""
    return child_env()
