"""Planning through the capability graph, the Pareto front and the pick: pure
functions, checked on declared capabilities shaped like the five backends'."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgesmith.doctor import DoctorRule, Machine
from edgesmith.optimize import choose, graph
from edgesmith.optimize.plan import build
from edgesmith.optimize.targets import Candidate, Target, resolve
from edgesmith.plugins import BackendRecord
from edgesmith.types import BackendInfo, Operation


def _info(name: str, *, converts=(), quantizes=(), compiles=(), runs=(), generates=None, notes=None):
    """A BackendInfo declaring these (source, format) pairs; the handlers are never called."""
    ops = [Operation(kind, a, "planning.only:handler", format=b)
           for kind, pairs in (("convert", converts), ("quantize", quantizes), ("compile", compiles))
           for a, b in pairs]
    ops += [Operation("load", f, "planning.only:handler", generates=generates is None or f in generates)
            for f in runs]
    return BackendInfo(name, "1", operations=ops, notes=notes or {})


INFOS = {
    "llamacpp": _info("llamacpp", converts=[("hf", "gguf"), ("gguf", "hf")], quantizes=[("gguf", "gguf")],
                      runs=["gguf"]),
    "openvino": _info("openvino", converts=[("hf", "openvino"), ("onnx", "openvino")],
                      quantizes=[("openvino", "openvino")], compiles=[("openvino", "openvino")],
                      runs=["openvino"]),
    "mlx": _info("mlx", converts=[("hf", "mlx")], quantizes=[("hf", "mlx"), ("mlx", "mlx")], runs=["mlx"]),
    "olive": _info("olive", converts=[("hf", "onnx")], quantizes=[("onnx", "onnx")], runs=["onnx"]),
    "qnn": _info("qnn", converts=[("onnx", "onnx")], quantizes=[("onnx", "qnn")], compiles=[("qnn", "qnn")],
                 runs=["qnn", "onnx"], generates=[], notes={"run": "fixed-shape graphs only"}),
}

# Targets and doctor rules as the real backends contribute them (tests/e2e runs
# the real ones); the core itself names none.
KNOWN = {t.name: t for t in (
    Target("portable", "any CPU", "cpu", ("llamacpp",), "gguf", {"dtype": "f16"},
           (Candidate("Q4_K_M", scheme="Q4_K_M"), Candidate("Q8_0", scheme="Q8_0")), rank=10),
    Target("intel-cpu", "Intel CPUs", "cpu", ("openvino",), "openvino", {"dtype": "fp16"},
           (Candidate("int4-g64", bits=4, group_size=64), Candidate("int8", bits=8)),
           present=lambda m: m.cpu_vendor == "Intel", rank=20),
    Target("apple-silicon", "Apple M-series", "gpu", ("mlx",), "mlx", {"dtype": "float16"},
           (Candidate("4bit-g64", bits=4, group_size=64), Candidate("8bit-g64", bits=8, group_size=64)),
           present=lambda m: bool(m.apple_silicon), rank=30),
    Target("nvidia-gpu", "NVIDIA GPUs", "gpu", ("olive",), "onnx", {"dtype": "fp32", "provider": "cpu"},
           (Candidate("int4-g32", bits=4, group_size=32), Candidate("int8", bits=8)),
           present=lambda m: bool(m.cuda_devices), device_options={"dtype": "fp16", "provider": "cuda"}, rank=40),
    Target("snapdragon-npu", "Hexagon NPU", "npu", ("qnn",), "qnn", {}, (Candidate("a16w8", scheme="a16w8"),),
           compile="npu", present=lambda m: bool(m.npus), fallback="snapdragon-cpu", rank=50),
    Target("snapdragon-cpu", "Snapdragon CPU", "cpu", ("llamacpp",), "gguf", {"dtype": "f16"},
           (Candidate("Q4_0", scheme="Q4_0"), Candidate("Q8_0", scheme="Q8_0")),
           present=lambda m: bool(m.npus), offered=False, rank=60),
)}
RULES = [DoctorRule("llamacpp", lambda m: "any CPU", priority=0),
         DoctorRule("qnn", lambda m: "Hexagon NPU" if m.npus else None, priority=40)]

AMD = Machine(os="Linux", arch="x86_64", cpu_vendor="AMD", cpu_model="EPYC", isa=("AVX2",),
              physical_cores=2, logical_cores=2, memory_bytes=24 * 2**30)
SNAPDRAGON = Machine(os="Windows", arch="ARM64", cpu_vendor="Qualcomm", cpu_model="X1E80100", isa=("NEON",),
                     physical_cores=12, logical_cores=12, memory_bytes=32 * 2**30,
                     snapdragon="Snapdragon X Elite", npus=("Hexagon NPU",))


def records(*names: str) -> dict[str, BackendRecord]:
    return {n: BackendRecord(n, "available", info=INFOS[n]) for n in names}


def test_route_prefers_fewest_steps_then_the_targets_own_backend():
    edges = graph.edges(INFOS)
    r = graph.route(edges, "gguf", "openvino", prefer=("openvino",))
    assert [(e.backend, e.src, e.dst) for e in r] == [("llamacpp", "gguf", "hf"), ("openvino", "hf", "openvino")]
    assert graph.route(edges, "hf", "hf") == []
    assert graph.route(edges, "qnn", "hf") is None


def test_every_target_from_a_gguf_model_fans_out_from_one_import():
    names, _ = resolve(["all"], AMD, KNOWN)
    plan = build(Path("/m.gguf"), "gguf", names, KNOWN, records(*INFOS), AMD)
    steps = list(plan.steps.values())
    assert steps[0].key == "llamacpp/hf" and steps[0].source == "model"
    # every route starts at the imported checkpoint, not at the quantized GGUF
    firsts = [s for s in steps if s.op == "convert" and s.key != "llamacpp/hf"]
    assert firsts and all(s.source == "llamacpp/hf" for s in firsts)
    by = {t.name: t for t in plan.targets}
    assert by["intel-cpu"].backend == "openvino" and by["intel-cpu"].reference == "openvino/openvino-fp16"
    assert by["apple-silicon"].candidates == {"4bit-g64": "mlx/4bit-g64", "8bit-g64": "mlx/8bit-g64"}
    # the f16 GGUF and Q8_0 are shared by portable and the Snapdragon CPU fallback, and planned once
    assert plan.steps["llamacpp/Q8_0"].targets == ["portable", "snapdragon-npu"]
    assert len([s for s in steps if s.key.startswith("llamacpp/gguf-f16")]) == 1


def test_npu_target_without_text_generation_falls_back_and_says_why():
    plan = build(Path("/m"), "hf", ["snapdragon-npu"], KNOWN, records(*INFOS), SNAPDRAGON)
    (t,) = plan.targets
    assert t.name == "snapdragon-npu" and t.backend == "llamacpp"
    assert set(t.candidates) == {"Q4_0", "Q8_0"} and t.present
    note = t.notes[0]
    assert "qnn is not planned for text generation" in note
    # the cross-backend route Olive -> QNN is found and shown
    assert "convert hf → onnx [olive] → quantize onnx → qnn [qnn] → compile qnn → qnn [qnn]" in note


def test_target_whose_backend_is_missing_is_skipped_with_the_install_hint():
    plan = build(Path("/m"), "hf", ["intel-cpu", "portable"], KNOWN, records("llamacpp"), AMD)
    by = {t.name: t for t in plan.targets}
    assert by["intel-cpu"].skipped == "openvino is not installed (pip install edgesmith-openvino)"
    assert by["portable"].backend == "llamacpp"
    assert "openvino" not in " ".join(plan.steps)


def test_device_builds_when_the_device_is_present():
    nvidia = Machine(os="Linux", arch="x86_64", cpu_vendor="AMD", cpu_model="x", isa=(), physical_cores=8,
                     logical_cores=16, memory_bytes=2**35, gpus=("NVIDIA GPU",), cuda_devices=("RTX 4090",))
    (t,) = build(Path("/m"), "hf", ["nvidia-gpu"], KNOWN, records("olive"), nvidia).targets
    assert t.present and not t.notes
    (t2,) = build(Path("/m"), "hf", ["nvidia-gpu"], KNOWN, records("olive"), AMD).targets
    assert "stand-in" in t2.notes[0]


def test_auto_follows_the_doctor_and_unknown_targets_are_refused():
    assert resolve(["auto"], AMD, KNOWN, RULES)[0] == ["portable"]
    assert resolve(["auto"], SNAPDRAGON, KNOWN, RULES)[0] == ["snapdragon-npu"]
    from edgesmith.errors import UserError

    with pytest.raises(UserError, match="unknown target 'tpu'; choose one of auto, portable"):
        resolve(["tpu"], AMD, KNOWN)


def _row(key, size, tps, ppl, verdict="pass", tps_half=2.0, ppl_half=0.01, **kw):
    """A measured row: decode mean with its 95 % interval, perplexity ratio (reference 10.0) with its."""
    ratio = ppl / 10.0
    return {"key": key, "label": key, "size_bytes": size, "decode_tps": tps, "perplexity": ppl,
            "ppl_ratio": ratio, "decode": {"mean": tps, "sd": tps_half, "n": 5, "lo": tps - tps_half,
                                           "hi": tps + tps_half},
            "intervals": {"ppl_ratio": {"value": ratio, "lo": ratio - ppl_half, "hi": ratio + ppl_half}},
            "verdict": verdict, "errors": [], "gates": [], **kw}


def test_pareto_front_and_pick():
    rows = [_row("f16", 270e6, 40, 10.0), _row("q8", 145e6, 70, 10.05), _row("q4", 90e6, 100, 10.6),
            _row("q4-slow", 95e6, 60, 10.7), _row("q2", 60e6, 110, 16.0, verdict="fail",
                                                  failed=["ppl_ratio 1.6 is over the limit"])]
    assert choose.pareto(rows) == {"f16", "q8", "q4", "q2"}
    for r in rows:
        r["pareto"] = r["key"] in choose.pareto(rows)
    key, why = choose.pick(rows, "speed", None)
    assert key == "q4" and "q2 (ppl_ratio 1.6 is over the limit)" in why
    # q8's perplexity ratio interval overlaps f16's: a tie, so the faster one wins
    assert choose.pick(rows, "quality", None)[0] == "q8"
    rows[1].update(_row("q8", 145e6, 70, 10.3, pareto=True))
    assert choose.pick(rows, "quality", None)[0] == "f16"
    assert choose.pick(rows, "size", None)[0] == "q4"
    # a budget rules out what does not fit
    for r, mb in zip(rows, (300, 160, 110, 110, 70), strict=True):
        r["peak_rss_mb"] = mb
    assert choose.pick(rows, "quality", 150)[0] == "q4"
    assert choose.pick(rows, "speed", 50)[0] is None


def test_speed_ties_are_overlapping_intervals():
    # 100 ± 2 and 98 ± 2 overlap: a tie, so the smaller one wins
    rows = [_row("a", 200e6, 100, 10.0), _row("b", 100e6, 98, 10.2)]
    key, why = choose.pick(rows, "speed", None)
    assert key == "b" and "ties on speed within the noise with a" in why and "chosen among them by size" in why
    # the same means measured tightly do not tie: the faster one wins
    rows = [_row("a", 200e6, 100, 10.0, tps_half=0.5), _row("b", 100e6, 98, 10.2, tps_half=0.5)]
    assert choose.pick(rows, "speed", None)[0] == "a"
    # a 30 % gap inside a wide interval is still a tie: no verdict inside the noise
    rows = [_row("a", 200e6, 130, 10.0, tps_half=40), _row("b", 100e6, 100, 10.2, tps_half=40)]
    assert choose.pick(rows, "speed", None)[0] == "b"


def test_an_undecided_candidate_is_never_chosen():
    rows = [_row("base", 200e6, 50, 10.0), _row("q4", 60e6, 150, 10.4, verdict="undecided",
                                                failed=["undecided: top1 0.851: cannot tell from 0.85 yet"])]
    key, why = choose.pick(rows, "speed", None)
    assert key == "base" and "q4 (undecided: top1 0.851" in why and "not chosen until decided" in why


# QNN as the real backend declares it since #19: language models to static graphs.
QNN_LLM = _info("qnn", converts=[("hf", "qnn")], quantizes=[("qnn", "qnn")], compiles=[("qnn", "qnn")],
                runs=["qnn"])


def _npu_with_cpu(declines=lambda m, model: None) -> dict[str, Target]:
    import attrs

    npu = attrs.evolve(KNOWN["snapdragon-npu"], fallback=None, competitors=("snapdragon-cpu",), declines=declines)
    return {**KNOWN, "snapdragon-npu": npu}


def test_npu_candidates_are_planned_beside_the_snapdragon_cpu_in_one_table():
    known = _npu_with_cpu()
    recs = {**records("llamacpp"), "qnn": BackendRecord("qnn", "available", info=QNN_LLM)}
    plan = build(Path("/m"), "hf", ["snapdragon-npu"], known, recs, AMD)
    (t,) = plan.targets
    assert t.backend == "qnn" and t.base == "qnn/qnn" and t.candidates == {"a16w8": "qnn/a16w8-npu"}
    (cpu,) = t.competitors
    assert cpu.backend == "llamacpp" and cpu.name == "snapdragon-npu" and set(cpu.candidates) == {"Q4_0", "Q8_0"}
    assert [g.backend for g in t.groups()] == ["qnn", "llamacpp"]
    # every row of both stacks is measured, each once, and its steps are the target's
    assert set(plan.artifacts()) == {"qnn/qnn", "qnn/a16w8-npu", "llamacpp/gguf-f16", "llamacpp/Q4_0",
                                     "llamacpp/Q8_0"}
    assert all(s.targets == ["snapdragon-npu"] for s in plan.steps.values())
    assert any("chosen from the numbers" in n for n in t.notes)
    assert any("beside it: Snapdragon CPU — backend llamacpp" in line for line in plan.describe())


def test_a_declined_npu_leaves_the_snapdragon_cpu_with_the_reason():
    seen = []

    def declines(machine, model):
        seen.append(model)
        return "the simulator would take hours on 135M weights"

    recs = {**records("llamacpp"), "qnn": BackendRecord("qnn", "available", info=QNN_LLM)}
    (t,) = build(Path("/m"), "hf", ["snapdragon-npu"], _npu_with_cpu(declines), recs, AMD).targets
    assert seen == [Path("/m")]
    assert t.name == "snapdragon-npu" and t.backend == "llamacpp" and not t.competitors
    assert t.notes[0].startswith("qnn is not planned: the simulator would take hours on 135M weights")
    # without qnn at all the CPU stands in too, saying qnn is missing
    (t2,) = build(Path("/m"), "hf", ["snapdragon-npu"], _npu_with_cpu(), records("llamacpp"), AMD).targets
    assert t2.backend == "llamacpp" and "qnn is not installed" in t2.notes[0]
