"""No network, no telemetry, and Olive failures reported as one line with the log kept."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from edgesmith import api
from edgesmith.errors import BackendError

pytest.importorskip("olive", reason="edgesmith-olive's stack (olive-ai) is not installed")
pytest.importorskip("onnxruntime_genai", reason="onnxruntime-genai is not installed")



def test_olive_telemetry_is_silenced(bundles):
    bundles("llama", "int4")  # at least one Olive workflow ran in this process
    from edgesmith_olive.offline import telemetry_is_silenced

    assert telemetry_is_silenced()
    import os

    assert os.environ.get("OLIVE_DISABLE_TELEMETRY") == "1"


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
