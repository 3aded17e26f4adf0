"""The one offline environment (edgesmith.offline) and the test kit's network recorder."""

from __future__ import annotations

import os
import socket

import pytest

from edgesmith import offline
from edgesmith.testing.fixtures import env_offline, network_guard


def test_applied_sets_for_the_block_and_restores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("DO_NOT_TRACK", "0")
    monkeypatch.delenv("EDGESMITH_TEST_SWITCH", raising=False)
    with offline.applied(extra={"EDGESMITH_TEST_SWITCH": "1"}) as wanted:
        assert wanted == {**offline.OFFLINE_ENV, "EDGESMITH_TEST_SWITCH": "1"}
        assert all(os.environ[k] == v for k, v in wanted.items())
    assert "HF_HUB_OFFLINE" not in os.environ and "EDGESMITH_TEST_SWITCH" not in os.environ
    assert os.environ["DO_NOT_TRACK"] == "0"


def test_child_env_and_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    env = offline.child_env({"PATH": "/bin", "HF_HUB_OFFLINE": "0"}, extra={"NNCF_CI": "1"})
    assert env == {"PATH": "/bin", **offline.OFFLINE_ENV, "NNCF_CI": "1"}
    assert env_offline()["HF_HUB_OFFLINE"] == "1"
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "0")  # the user's choice wins
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    offline.set_defaults()
    assert os.environ["HF_HUB_DISABLE_TELEMETRY"] == "0" and os.environ["TRANSFORMERS_OFFLINE"] == "1"


def test_network_guard_records_what_it_refuses() -> None:
    # Nested inside the autouse guard: the innermost one refuses first and records once.
    # 192.0.2.0/24 and .invalid are reserved for documentation; nothing leaves the machine.
    with network_guard() as attempts:
        start = len(attempts)
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.setblocking(False)
                with pytest.raises(OSError, match="tests run offline"):
                    s.connect(("192.0.2.7", 443))
            with pytest.raises(socket.gaierror, match="tests run offline"):
                socket.getaddrinfo("hub.example.invalid", 443)
            assert attempts[start:] == ["connect ('192.0.2.7', 443)", "dns 'hub.example.invalid'"]
        finally:
            del attempts[start:]
    assert socket.getaddrinfo("localhost", 80)  # local names still resolve
