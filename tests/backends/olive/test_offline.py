"""No network, no telemetry, vendor patches scoped to the job, and Olive failures
reported as one line with the log kept."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import attrs
import pytest

from edgesmith import api, offline
from edgesmith.errors import BackendError
from edgesmith.patches import applied

pytest.importorskip("olive", reason="edgesmith-olive's stack (olive-ai) is not installed")
pytest.importorskip("onnxruntime_genai", reason="onnxruntime-genai is not installed")

from edgesmith_olive import patches as olive_patches  # noqa: E402
from edgesmith_olive.offline import OLIVE_ENV, telemetry_is_silenced  # noqa: E402


def _stopped_convert(tiny: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                     look: Any) -> dict[str, Any]:
    """Convert through the real workflow code with Olive's run replaced by ``look``,
    which records what the job sees and stops it (no Olive work is done)."""
    import olive.workflows

    seen: dict[str, Any] = {}

    def fake_run(config: Any) -> None:
        seen.update(look())
        raise RuntimeError("stopped by the test")

    monkeypatch.setattr(olive.workflows, "run", fake_run)
    with pytest.raises(BackendError, match="stopped by the test"):
        api.convert(tiny("llama"), to="onnx", output=tmp_path / "out", backend="olive")
    return seen


def test_telemetry_is_inert_for_the_job_and_restored_after(tiny, tmp_path, monkeypatch):
    from olive.telemetry import telemetry as olive_telemetry

    monkeypatch.delenv("OLIVE_DISABLE_TELEMETRY", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    before = olive_telemetry.Telemetry.__dict__.get("_instance")
    seen = _stopped_convert(tiny, tmp_path, monkeypatch, lambda: {
        "silenced": telemetry_is_silenced(),
        "env": {k: os.environ.get(k) for k in offline.environment(OLIVE_ENV)},
    })
    assert seen["silenced"]
    assert seen["env"] == offline.environment(OLIVE_ENV)
    assert olive_telemetry.Telemetry.__dict__.get("_instance") is before
    assert "OLIVE_DISABLE_TELEMETRY" not in os.environ and "HF_HUB_OFFLINE" not in os.environ


def test_patch_outside_its_version_range_is_skipped_with_the_reason(tiny, tmp_path, monkeypatch, caplog):
    import onnxruntime_genai.models.builder as builder

    from edgesmith_olive.workarounds import _AutoConfig

    # A record written for onnxruntime-genai releases older than the installed one.
    old = attrs.evolve(olive_patches.ROPE_THETA, versions="<0.11")
    assert not old.applies()[0]
    monkeypatch.setattr(olive_patches, "ROPE_THETA", old)
    with caplog.at_level(logging.INFO, logger="edgesmith"):
        seen = _stopped_convert(tiny, tmp_path, monkeypatch,
                                lambda: {"wrapped": isinstance(builder.AutoConfig, _AutoConfig)})
    assert seen == {"wrapped": False}
    installed = old.applies()[1]
    assert f"vendor patch genai-builder-rope-theta skipped: {installed}" in caplog.text
    assert "onnxruntime-genai" in installed and "outside <0.11" in installed


def test_patches_in_range_apply_for_the_block_only():
    import onnxruntime_genai.models.builder as builder
    from olive.passes.onnx.hqq_quantization import OnnxHqqQuantization

    real_config, real_pack = builder.AutoConfig, OnnxHqqQuantization.__dict__["_quantize_internal_numpy"]
    for p in olive_patches.PATCHES:
        assert p.applies() == (True, ""), p.name
        assert p.symbol and p.symptom and p.versions
    with applied(olive_patches.PATCHES) as names:
        assert names == [p.name for p in olive_patches.PATCHES]
        assert telemetry_is_silenced()
        assert builder.AutoConfig is not real_config
        assert OnnxHqqQuantization.__dict__["_quantize_internal_numpy"] is not real_pack
    assert builder.AutoConfig is real_config
    assert OnnxHqqQuantization.__dict__["_quantize_internal_numpy"] is real_pack


def _loggers() -> dict[str, logging.Logger]:
    found = {name: lg for name, lg in logging.Logger.manager.loggerDict.items() if isinstance(lg, logging.Logger)}
    return {"": logging.getLogger(), **found}


def _process_state() -> dict[str, Any]:
    keys = [*offline.environment(OLIVE_ENV), "OLIVE_CACHE_DIR"]
    return {
        "cwd": os.getcwd(),
        "loggers": {name: (tuple(lg.handlers), lg.level, lg.propagate) for name, lg in _loggers().items()},
        "modules": dict(sys.modules),
        "env": {k: os.environ.get(k) for k in keys},
        "stdout": (sys.stdout, sys.stderr),
    }


def test_job_leaves_cwd_loggers_modules_and_env_as_they_were(tiny, tmp_path, monkeypatch):
    monkeypatch.delenv("OLIVE_DISABLE_TELEMETRY", raising=False)
    monkeypatch.chdir(tmp_path)
    # The loggers Olive configures on every run exist before it (as after any earlier job).
    for name in ("olive", "onnxruntime"):
        logging.getLogger(name)
    before = _process_state()
    api.convert(tiny("llama"), to="onnx", output=tmp_path / "model", backend="olive")
    after = _process_state()
    assert after["cwd"] == before["cwd"]
    assert after["env"] == before["env"]
    assert after["stdout"] == before["stdout"]
    changed = {n: (h, after["loggers"][n]) for n, h in before["loggers"].items() if after["loggers"][n] != h}
    assert changed == {}
    for name in after["loggers"].keys() - before["loggers"].keys():
        for h in after["loggers"][name][0]:  # loggers created by the job: no handler on a closed stream
            assert not getattr(getattr(h, "stream", None), "closed", False), (name, h)
    # Nothing imported before is gone, and no import is left blocked (a None entry).
    # (Entries may be replaced: transformers swaps in lazy modules as they load.)
    removed = [k for k in before["modules"] if k not in sys.modules]
    blocked = [k for k, m in after["modules"].items() if m is None and before["modules"].get(k, 0) is not None]
    assert removed == [] and blocked == []


def test_network_recorder_sees_and_blocks_attempts(network_attempts):
    """The recorder behind ``network_attempts`` sees what the guard refuses, also
    where the caller swallows the error (as telemetry code does). Nothing leaves
    the machine: the guard refuses before the real call, and the addresses are
    reserved for documentation (192.0.2.0/24, RFC 5737; .invalid, RFC 2606)."""
    start = len(network_attempts)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setblocking(False)  # were the guard missing, nothing would wait on the network
            with pytest.raises(OSError, match="tests run offline"):
                s.connect(("192.0.2.1", 443))
            with pytest.raises(OSError, match="tests run offline"):
                s.connect_ex(("192.0.2.1", 80))
        with pytest.raises(socket.gaierror, match="tests run offline"):
            socket.getaddrinfo("telemetry.example.invalid", 443)
        try:
            urllib.request.urlopen("http://192.0.2.1/heartbeat", timeout=1)  # noqa: S310
        except OSError:
            pass  # swallowed, as a telemetry sender would
        assert network_attempts[start:] == [
            "connect ('192.0.2.1', 443)",
            "connect ('192.0.2.1', 80)",
            "dns 'telemetry.example.invalid'",
            "dns '192.0.2.1'",
        ]
    finally:
        del network_attempts[start:]  # deliberate: not the session's attempts
    # Loopback stays open: the guard is no blanket refusal.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        with socket.create_connection(srv.getsockname(), timeout=5):
            pass
    assert network_attempts[start:] == []


def test_no_network_attempted(bundles, network_attempts):
    for arch in ("llama", "qwen2", "phi3"):
        bundles(arch, "int4")
    assert network_attempts == []


def test_olive_pass_failure_is_one_line_with_log(tiny, tmp_path):
    broken = tmp_path / "no-weights"
    shutil.copytree(tiny("llama"), broken)
    (broken / "model.safetensors").unlink()
    out = tmp_path / "out"
    with pytest.raises(BackendError) as info:
        api.convert(broken, to="onnx", output=out, backend="olive")
    msg = str(info.value)
    assert "\n" not in msg
    assert "pass builder:modelbuilder" in msg
    log = tmp_path / "out.olive-failed.log"
    assert str(log) in msg and log.is_file()
    assert "Running pass builder:modelbuilder" in log.read_text()
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_cli_convert_quantize_run(tiny, tmp_path, clean_env):
    """The CLI end to end, in a child process that refuses non-loopback connects."""
    guard = (
        "import socket, ipaddress, sys\n"
        "real = socket.socket.connect\n"
        "def connect(self, a):\n"
        "    if isinstance(a, tuple) and a and not ipaddress.ip_address(a[0].split('%')[0]).is_loopback:\n"
        "        raise OSError(f'network access to {a!r}')\n"
        "    return real(self, a)\n"
        "socket.socket.connect = connect\n"
        "def gai(host, *a, **k):\n"
        "    raise socket.gaierror(f'DNS lookup of {host!r}')\n"
        "socket.getaddrinfo = gai\n"
        "from edgesmith.cli import main\n"
        "sys.argv = ['edgesmith', *sys.argv[1:]]\n"
        "main()\n"
    )

    def cli(*args: str) -> subprocess.CompletedProcess:
        res = subprocess.run([sys.executable, "-c", guard, *args], capture_output=True, text=True,
                             env=clean_env, timeout=600)
        assert res.returncode == 0, (args, res.stdout[-1500:], res.stderr[-1500:])
        return res

    onnx_dir, int4_dir = tmp_path / "onnx", tmp_path / "int4"
    cli("convert", str(tiny("phi3")), "--to", "onnx", "-o", str(onnx_dir), "--backend", "olive")
    cli("quantize", str(onnx_dir), "--bits", "4", "--group-size", "32", "-o", str(int4_dir), "--backend", "olive")
    res = cli("run", str(int4_dir), "-p", "The morning train", "-n", "5", "--backend", "olive", "--json")
    data = json.loads(res.stdout[res.stdout.index("{"):])
    assert 1 <= data["generated_tokens"] <= 5
    manifest = json.loads((int4_dir / "edgesmith.json").read_text())
    assert manifest["parent"]["format"] == "onnx"
    bad = subprocess.run([sys.executable, "-c", guard, "quantize", str(onnx_dir), "--bits", "3", "-o",
                          str(tmp_path / "bad"), "--backend", "olive"], capture_output=True, text=True,
                         env=clean_env, timeout=600)
    errors = [line for line in bad.stderr.splitlines() if "error" in line]
    assert bad.returncode == 2 and len(errors) == 1 and "--bits" in errors[0], bad.stderr
    assert not (tmp_path / "bad").exists()
