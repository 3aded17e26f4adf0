"""Machine detection on inputs recorded elsewhere, and the recommendation tree."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgesmith.cli import main
from edgesmith.doctor import DoctorRule, Machine, RecordedProbe, detect_machine, recommend

MACHINES = Path(__file__).parent / "machines"


def machine(name):
    return detect_machine(RecordedProbe(json.loads((MACHINES / f"{name}.json").read_text())))


def test_apple_silicon():
    m = machine("apple_m3_pro")
    assert m.apple_silicon and m.os == "macOS" and m.cpu_model == "Apple M3 Pro"
    assert {"NEON", "DotProd", "I8MM"} <= set(m.isa) and "SME" not in m.isa
    assert m.memory_bytes == 36 * 2**30 and m.physical_cores == 12


def test_snapdragon_laptop():
    m = machine("snapdragon_x_elite")
    assert m.cpu_vendor == "Qualcomm" and m.snapdragon == "Snapdragon X Elite"
    assert "Qualcomm Hexagon NPU" in m.npus and {"NEON", "DotProd", "I8MM"} <= set(m.isa)
    assert m.logical_cores == 12


def test_intel_with_npu():
    m = machine("intel_core_ultra_npu")
    assert m.cpu_vendor == "Intel" and "Intel NPU" in m.npus and "Intel GPU" in m.gpus
    assert {"AVX2", "AVX-VNNI"} <= set(m.isa) and "AVX-512" not in m.isa
    assert m.physical_cores == 4 and m.logical_cores == 8


def test_nvidia_box():
    m = machine("amd_nvidia")
    assert m.cuda_devices == ("GPU 0: NVIDIA GeForce RTX 4090",) and "AVX-512" in m.isa


def test_rules_decide_by_priority_and_ladders_fit_the_budget():
    m = machine("intel_core_ultra_npu")
    rules = [DoctorRule("cpu", lambda m: "any CPU", priority=0, quantizations={8: "q8", 4: "q4"}),
             DoctorRule("intel", lambda m: "Intel" if m.cpu_vendor == "Intel" else None, priority=20,
                        quantizations={8: "int8", 4: "int4"}),
             DoctorRule("broken", lambda m: 1 / 0, priority=99)]
    r = recommend(m, params=7_000_000_000, budget_mb=8192, installed={"intel": True}, found=rules)
    assert r.backend == "intel" and r.quantization == "int4" and r.installed
    r = recommend(m, params=70_000_000_000, budget_mb=2048, installed={"intel": True}, found=rules)
    assert r.bits is None and "do not fit" in r.reason
    r = recommend(m, params=1_000_000, budget_mb=2048, installed={"cpu": True}, found=rules)
    assert r.backend == "intel" and not r.installed and r.fallback == "cpu"
    r = recommend(machine("amd_nvidia"), params=135_000_000, budget_mb=1024, found=rules,
                  kv_bytes_per_token=2 * 30 * 3 * 64 * 2)
    assert r.backend == "cpu" and r.context_length and r.context_length % 256 == 0
    assert recommend(m, params=None, budget_mb=None, found=[]).backend == "none"


def test_this_machine_cli():
    human = CliRunner().invoke(main, ["doctor"])
    assert human.exit_code == 0 and "recommended" in human.output


@pytest.mark.parametrize("name", ["apple_m3_pro", "snapdragon_x_elite", "intel_core_ultra_npu", "amd_nvidia"])
def test_recorded_machines_serialise(name):
    assert json.dumps(machine(name).to_dict())


def test_model_facts_size_a_causal_lm_and_give_an_encoder_no_kv_cache(tiny_model, tmp_path):
    """An encoder keeps no KV cache, so doctor gives it no context length (it used to
    size BERT's "context" as if it were a language model's)."""
    from edgesmith.doctor import model_facts
    from edgesmith.testing.tinybert import tiny_bert

    params, kv = model_facts(tiny_model("llama"))
    assert params > 0 and kv > 0
    bparams, bkv = model_facts(tiny_bert(tmp_path / "bert"))
    assert bparams > 0 and bkv is None
    m = Machine(os="Linux", arch="x86_64", cpu_vendor="AMD", cpu_model="x", isa=(), physical_cores=2,
                logical_cores=2, memory_bytes=2**34)
    rule = DoctorRule("llamacpp", lambda m: "any CPU", quantizations={8: "Q8_0"})
    lm = recommend(m, params=params, budget_mb=None, kv_bytes_per_token=kv, found=[rule])
    enc = recommend(m, params=bparams, budget_mb=None, kv_bytes_per_token=bkv, found=[rule])
    assert lm.context_length and "KV cache" in lm.reason
    assert enc.context_length is None and "KV cache" not in enc.reason
