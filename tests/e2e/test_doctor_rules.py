"""doctor's recommendations from the rules the real backends contribute."""

from __future__ import annotations

import json

from click.testing import CliRunner

from edgesmith.cli import main
from edgesmith.doctor import recommend

from ..core.test_doctor import machine


def test_apple_silicon_gets_mlx():
    r = recommend(machine("apple_m3_pro"), params=1_500_000_000, budget_mb=4096, installed={"mlx": True})
    assert r.backend == "mlx" and r.bits == 8 and r.installed and "Apple silicon" in r.reason


def test_snapdragon_gets_qnn_with_the_cpu_fallback():
    r = recommend(machine("snapdragon_x_elite"), params=3_800_000_000, budget_mb=4096,
                  installed={"llamacpp": True})
    assert r.backend == "qnn" and r.bits == 4 and not r.installed and r.fallback == "llamacpp"
    assert "edgesmith-qnn is not usable here" in r.reason


def test_intel_with_npu_gets_openvino():
    r = recommend(machine("intel_core_ultra_npu"), params=7_000_000_000, budget_mb=8192,
                  installed={"openvino": True})
    assert r.backend == "openvino" and r.quantization == "int4_asym g64" and "NPU" in r.reason


def test_nvidia_box_gets_olive():
    assert recommend(machine("amd_nvidia"), params=None, budget_mb=None).backend == "olive"


def test_this_machine_cli(tiny_model):
    out = CliRunner().invoke(main, ["doctor", "--model", str(tiny_model("llama")), "--budget-mb", "64", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    rec = data["recommendation"]
    # The rule of thumb: an Intel CPU gets OpenVINO, any other CPU llama.cpp (every backend is installed).
    want = "openvino" if data["machine"]["cpu_vendor"] == "Intel" else "llamacpp"
    assert data["machine"]["memory_bytes"] and rec["backend"] == want, rec
    assert rec["bits"] == 8 and rec["context_length"]
