"""Machine detection on inputs recorded elsewhere, and the recommendation tree."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgesmith.cli import main
from edgesmith.doctor import RecordedProbe, detect_machine, recommend

MACHINES = Path(__file__).parent / "machines"


def machine(name):
    return detect_machine(RecordedProbe(json.loads((MACHINES / f"{name}.json").read_text())))


def test_apple_silicon():
    m = machine("apple_m3_pro")
    assert m.apple_silicon and m.os == "macOS" and m.cpu_model == "Apple M3 Pro"
    assert {"NEON", "DotProd", "I8MM"} <= set(m.isa) and "SME" not in m.isa
    assert m.memory_bytes == 36 * 2**30 and m.physical_cores == 12
    r = recommend(m, params=1_500_000_000, budget_mb=4096, installed={"mlx": True})
    assert r.backend == "mlx" and r.bits == 8 and r.installed and "Apple silicon" in r.reason


def test_snapdragon_laptop():
    m = machine("snapdragon_x_elite")
    assert m.cpu_vendor == "Qualcomm" and m.snapdragon == "Snapdragon X Elite"
    assert "Qualcomm Hexagon NPU" in m.npus and {"NEON", "DotProd", "I8MM"} <= set(m.isa)
    assert m.logical_cores == 12
    r = recommend(m, params=3_800_000_000, budget_mb=4096, installed={"llamacpp": True})
    assert r.backend == "qnn" and r.bits == 4 and not r.installed and r.fallback == "llamacpp"
    assert "install edgesmith-qnn" in r.reason


def test_intel_with_npu():
    m = machine("intel_core_ultra_npu")
    assert m.cpu_vendor == "Intel" and "Intel NPU" in m.npus and "Intel GPU" in m.gpus
    assert {"AVX2", "AVX-VNNI"} <= set(m.isa) and "AVX-512" not in m.isa
    assert m.physical_cores == 4 and m.logical_cores == 8
    r = recommend(m, params=7_000_000_000, budget_mb=8192, installed={"openvino": True})
    assert r.backend == "openvino" and r.quantization == "int4_asym g64" and "NPU" in r.reason


def test_nvidia_box():
    m = machine("amd_nvidia")
    assert m.cuda_devices == ("GPU 0: NVIDIA GeForce RTX 4090",) and "AVX-512" in m.isa
    assert recommend(m, params=None, budget_mb=None).backend == "olive"


def test_budget_too_small_says_so():
    m = machine("intel_core_ultra_npu")
    r = recommend(m, params=70_000_000_000, budget_mb=2048, installed={"openvino": True})
    assert r.bits is None and "do not fit" in r.reason


def test_context_from_kv_cache():
    m = machine("amd_nvidia")
    r = recommend(m, params=135_000_000, budget_mb=1024, kv_bytes_per_token=2 * 30 * 3 * 64 * 2)
    assert r.context_length and r.context_length % 256 == 0


def test_this_machine_cli(tiny_model):
    out = CliRunner().invoke(main, ["doctor", "--model", str(tiny_model("llama")), "--budget-mb", "64", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["machine"]["memory_bytes"] and data["recommendation"]["backend"]
    assert data["recommendation"]["bits"] == 8 and data["recommendation"]["context_length"]
    human = CliRunner().invoke(main, ["doctor"])
    assert human.exit_code == 0 and "recommended" in human.output


@pytest.mark.parametrize("name", ["apple_m3_pro", "snapdragon_x_elite", "intel_core_ultra_npu", "amd_nvidia"])
def test_recorded_machines_serialise(name):
    assert json.dumps(machine(name).to_dict())
