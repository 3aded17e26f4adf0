"""doctor from measurements: figures, ranking and ties, the verdict against the
rule of thumb, the stored result and when it is stale, an optimize summary as
the source. Pure functions on recorded figures; the CLI on a stored entry."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgesmith import doctor_measure as dm
from edgesmith.cli import main
from edgesmith.doctor import DoctorRule, recommend, rule_of_thumb
from edgesmith.optimize.targets import Candidate, Target

from .test_doctor import machine


def speed(mean, sd, n=3):
    """A bench row's decode_tps as bench writes it (mean, sd, n and the older median/min/max)."""
    spread = sd or 0.0
    return {"mean": mean, "sd": sd, "n": n, "median": mean, "min": mean - spread, "max": mean + spread}


def stack(backend, label, mean=None, sd=None, n=3, reason=None):
    f = dm.figure(speed(mean, sd, n)) if mean is not None else None
    return dm.Stack(backend, label, bits=dm.bits_of(label), figure=f, reason=reason)


# Figures as measured for SmolLM2-135M on a 2-core AMD EPYC (tok/s, 64 + 64 tokens, 3 runs).
AMD_EPYC = [stack("llamacpp", "Q4_K_M", 74.0, 2.0), stack("olive", "int4-g32", 141.0, 3.0),
            stack("openvino", "int4-g64", 126.0, 4.0), stack("mlx", "4bit-g64", 10.1, 0.4),
            stack("qnn", "a16w8", reason="qnn does not generate text: fixed-shape graphs only")]
LLAMA_RULE = ("llamacpp", "AMD x86_64 CPU: llama.cpp is the portable choice")


# -- figures --------------------------------------------------------------------

def test_figures_carry_their_spread_and_n():
    f = dm.figure(speed(141.0, 3.0))
    assert (f.kind, f.value, f.sd, f.lo, f.hi, f.n) == ("mean ± sd", 141.0, 3.0, 138.0, 144.0, 3)
    assert f.text() == "141.0 ± 3.0 tok/s (n=3)"
    # a row from before bench had mean and sd: the median with min–max, n from its runs
    old = dm.figure({"median": 97.6, "min": 95.0, "max": 99.1}, runs=3)
    assert (old.kind, old.lo, old.hi, old.n) == ("median (min–max)", 95.0, 99.1, 3)
    assert "median, 95.0–99.1, n=3" in old.text()
    # one run, or a bare number (an optimize summary): no spread, so it ties with anything
    one = dm.figure(speed(50.0, None, n=1))
    bare = dm.figure(12.5)
    assert one.kind == bare.kind == "single value" and one.overlaps(f) and bare.overlaps(f)
    assert dm.figure(None) is None and dm.figure({"mean": None, "median": None}) is None


@pytest.mark.parametrize("label, bits", [("Q4_K_M", 4), ("Q8_0", 8), ("int4-g32", 4), ("int8", 8),
                                         ("4bit-g64", 4), ("8bit-g64", 8), ("a16w8", 8), ("IQ4_XS", 4),
                                         ("nf4", 4), ("base", None), (None, None)])
def test_bits_from_a_candidates_name(label, bits):
    assert dm.bits_of(label) == bits


def test_ratio_carries_the_spread_of_both():
    r, sd = dm.ratio(dm.figure(speed(141.0, 3.0)), dm.figure(speed(74.0, 2.0)))
    assert r == pytest.approx(141 / 74) and sd == pytest.approx(r * ((3 / 141) ** 2 + (2 / 74) ** 2) ** 0.5)
    assert dm.ratio_text(dm.figure(speed(141.0, 3.0)), dm.figure(12.0)).endswith("(no spread)")
    # two older figures (median, min–max): the ratio's range
    a = dm.figure({"median": 144.3, "min": 142.0, "max": 146.6}, runs=2)
    b = dm.figure({"median": 97.6, "min": 65.7, "max": 129.5}, runs=2)
    assert dm.ratio_text(a, b) == "1.48× (1.10–2.23)"


# -- ranking, ties and the verdict ----------------------------------------------

def test_ranking_orders_by_speed_and_lists_what_could_not_run():
    r = dm.rank(AMD_EPYC)
    assert [s.backend for s in r.measured] == ["olive", "openvino", "llamacpp", "mlx"]
    assert [s.backend for s in r.unusable] == ["qnn"] and "does not generate text" in r.why_not("qnn")
    assert [s.backend for s in r.tied] == ["olive"]  # 138–144 and 122–130 do not overlap


def test_disagreement_with_the_rule_of_thumb_is_said_with_figures():
    v = dm.decide(dm.rank(AMD_EPYC), *LLAMA_RULE)
    assert v.backend == "olive" and v.label == "int4-g32" and v.agrees is False and not v.tie
    assert v.reason.startswith("rule of thumb: llamacpp (AMD x86_64 CPU")
    assert "measured here: olive int4-g32 141.0 ± 3.0 tok/s (n=3) is fastest" in v.reason
    assert "1.91 ± 0.07× llamacpp Q4_K_M 74.0 ± 2.0 tok/s (n=3)" in v.reason


def test_overlapping_intervals_are_a_tie_not_a_verdict():
    stacks = [stack("olive", "int4-g32", 141.0, 3.0), stack("openvino", "int4-g64", 138.0, 4.0),
              stack("llamacpp", "Q4_K_M", 74.0, 2.0)]
    v = dm.decide(dm.rank(stacks), *LLAMA_RULE)
    assert v.tie == ("olive int4-g32", "openvino int4-g64")
    assert "overlap, a tie within the noise" in v.reason and "not beyond the noise" in v.reason
    assert v.backend == "olive" and "llamacpp Q4_K_M" in v.reason
    # the rule of thumb's stack among the tied: it stands
    v = dm.decide(dm.rank(stacks), "openvino", "Intel CPU")
    assert v.backend == "openvino" and v.agrees is True and "the rule of thumb stands" in v.reason
    # a lone fastest that is the rule's: borne out, with the margin over the next
    v = dm.decide(dm.rank(stacks[2:] + [stack("mlx", "4bit-g64", 10.0, 0.5)]), *LLAMA_RULE)
    assert v.backend == "llamacpp" and v.agrees and v.reason.endswith("mlx 4bit-g64, as the rule of thumb says")


def test_a_ratio_is_not_a_verdict_when_spreads_overlap():
    # 100 ± 10 vs 95 ± 10: close means, overlapping intervals
    v = dm.decide(dm.rank([stack("a", "x4", 100.0, 10.0), stack("b", "y4", 95.0, 10.0)]), "b", "rule")
    assert v.backend == "b" and v.tie == ("a x4", "b y4")


def test_stacks_that_cannot_run_the_model_are_never_recommended():
    refused = stack("openvino", "int4-g64", reason="openvino does not take bert models")
    v = dm.decide(dm.rank([refused, stack("llamacpp", "Q4_K_M", 74.0, 2.0)]), "openvino", "Intel CPU")
    assert v.backend == "llamacpp" and "openvino could not be measured: openvino does not take bert" in v.reason
    v = dm.decide(dm.rank([refused]), "openvino", "Intel CPU")
    assert v.backend is None and "no stack could be measured" in v.reason
    # measured earlier, not usable now: listed, not recommended
    entry = {"stacks": [s.to_dict() for s in AMD_EPYC]}
    rep = dm.report(entry, LLAMA_RULE, installed={"llamacpp": True, "openvino": True, "mlx": True})
    assert rep["verdict"]["backend"] == "openvino"
    assert any(u["backend"] == "olive" and "not usable here now" in u["reason"] for u in rep["unusable"])
    # the rule of thumb skips a refused backend and says why
    intel = machine("intel_core_ultra_npu")
    rules = [DoctorRule("llamacpp", lambda m: "any CPU", priority=0, quantizations={4: "Q4_K_M"}),
             DoctorRule("openvino", lambda m: "Intel CPU", priority=20, quantizations={4: "int4"})]
    backend, why = rule_of_thumb(intel, rules, {"openvino": "it does not take bert models"})
    assert backend == "llamacpp" and "openvino would suit this machine (Intel CPU) but cannot run" in why
    r = recommend(intel, params=1_000_000, budget_mb=64, installed={"openvino": True, "llamacpp": True},
                  found=rules, refused={"openvino": "it does not take bert models"})
    assert r.backend == "llamacpp" and r.installed and r.quantization == "Q4_K_M"
    r = recommend(intel, params=None, budget_mb=None, installed={"openvino": True}, found=rules,
                  refused={"openvino": "no"})
    assert r.backend == "llamacpp" and not r.installed and r.fallback is None
    # a measured choice replaces the rule and keeps its backend's quantization ladder
    r = recommend(intel, params=1_000_000, budget_mb=64, installed={"llamacpp": True}, found=rules,
                  measured=("llamacpp", "measured here: fastest"))
    assert r.backend == "llamacpp" and r.reason.startswith("measured here") and r.quantization == "Q4_K_M"


def test_a_failed_build_names_the_step_that_failed_first():
    class Step:
        def __init__(self, source):
            self.source = source

    planned = {"llamacpp/gguf-f16": Step("model"), "llamacpp/Q4_K_M": Step("llamacpp/gguf-f16")}
    steps = {"llamacpp/gguf-f16": {"status": "failed", "error": "ImportError: huggingface-hub>=1.5.0 is required"},
             "llamacpp/Q4_K_M": {"status": "skipped", "error": "its source llamacpp/gguf-f16 did not finish"}}
    assert dm.build_failure("llamacpp/Q4_K_M", steps, planned) == \
        "build failed at llamacpp/gguf-f16: ImportError: huggingface-hub>=1.5.0 is required"
    steps["llamacpp/Q4_K_M"] = {"status": "failed", "error": "llama_model_quantize returned 1"}
    assert dm.build_failure("llamacpp/Q4_K_M", steps, planned) == "build failed: llama_model_quantize returned 1"


# -- which artifact per stack ---------------------------------------------------

TARGETS = {t.name: t for t in (
    Target("portable", "any CPU", "cpu", ("llamacpp",), "gguf", {},
           (Candidate("Q8_0", scheme="Q8_0"), Candidate("Q4_K_M", scheme="Q4_K_M")), rank=10),
    Target("snapdragon-cpu", "Snapdragon CPU", "cpu", ("llamacpp",), "gguf", {},
           (Candidate("Q4_0", scheme="Q4_0"), Candidate("Q8_0", scheme="Q8_0")),
           present=lambda m: bool(m.snapdragon), offered=False, rank=60),
    Target("nvidia-gpu", "NVIDIA", "gpu", ("olive",), "onnx", {},
           (Candidate("int4-g32", bits=4, group_size=32), Candidate("int8", bits=8)),
           present=lambda m: bool(m.cuda_devices), rank=40),
    Target("snapdragon-npu", "NPU", "npu", ("qnn",), "qnn", {}, (Candidate("a16w8", scheme="a16w8"),),
           fallback="snapdragon-cpu", rank=50),
)}


def test_one_comparable_candidate_per_stack():
    amd = dm.stack_targets(TARGETS, machine("amd_nvidia"), 4)
    assert set(amd) == {"portable", "nvidia-gpu", "snapdragon-npu"}
    assert [c.label for c in amd["portable"][0].candidates] == ["Q4_K_M"]
    assert [c.label for c in amd["nvidia-gpu"][0].candidates] == ["int4-g32"]
    qnn, note = amd["snapdragon-npu"]
    assert [c.label for c in qnn.candidates] == ["a16w8"] and "nearest is 8-bit" in note
    assert qnn.fallback is None  # llama.cpp is measured as itself, not as QNN's stand-in
    # on a Snapdragon llama.cpp's own target for it wins over the generic one
    snap = dm.stack_targets(TARGETS, machine("snapdragon_x_elite"), 4)
    assert "snapdragon-cpu" in snap and "portable" not in snap
    assert [c.label for c in snap["snapdragon-cpu"][0].candidates] == ["Q4_0"]
    eight = dm.stack_targets(TARGETS, machine("amd_nvidia"), 8)
    assert [c.label for c in eight["portable"][0].candidates] == ["Q8_0"]


# -- the stored result ----------------------------------------------------------

def entry_for(m, model_hash="sha256:aaa", versions=None, stacks=AMD_EPYC, created=None, path="/m"):
    return {"schema": dm.SCHEMA, "source": "measured", "created": "2025-01-01T00:00:00+00:00",
            "created_unix": created or time.time() - 7200, "machine": m.to_dict(),
            "model": {"path": path, "content_hash": model_hash, "fingerprint": "files:x", "name": "m"},
            "backends": versions if versions is not None else VERSIONS,
            "settings": {"prompt_tokens": 64, "gen_tokens": 64, "repeat": 3, "bits": 4},
            "stacks": [s.to_dict() for s in stacks]}


VERSIONS = {"llamacpp": {"version": "0.1.0", "libraries": {"llama-cpp-python": "0.3.36"}},
            "olive": {"version": "0.1.0", "libraries": {"onnxruntime-genai": "0.11.4"}}}


def test_a_stored_measurement_holds_only_for_the_same_machine_model_and_backends():
    amd = machine("amd_nvidia").to_dict()
    e = entry_for(machine("amd_nvidia"))
    assert dm.stale_reason(e, machine=amd, model_hash="sha256:aaa", versions=VERSIONS) is None
    assert "another model" in dm.stale_reason(e, machine=amd, model_hash="sha256:bbb", versions=VERSIONS)
    other = dm.stale_reason(e, machine=machine("intel_core_ultra_npu").to_dict(), model_hash="sha256:aaa",
                            versions=VERSIONS)
    assert other.startswith("it was measured on another machine (its ")
    newer = {**VERSIONS, "olive": {"version": "0.1.0", "libraries": {"onnxruntime-genai": "0.12.0"}}}
    assert dm.stale_reason(e, machine=amd, model_hash="sha256:aaa", versions=newer) == \
        "a backend changed since (olive's onnxruntime-genai 0.11.4 → 0.12.0)"
    bumped = {**VERSIONS, "llamacpp": {"version": "0.2.0", "libraries": {"llama-cpp-python": "0.3.36"}}}
    assert "llamacpp 0.1.0 → 0.2.0" in dm.stale_reason(e, machine=amd, model_hash="sha256:aaa", versions=bumped)
    assert dm.stale_reason(e, machine=amd, model_hash="sha256:aaa", versions={"llamacpp": VERSIONS["llamacpp"]}) \
        == "olive is no longer usable here"
    added = {**VERSIONS, "mlx": {"version": "0.1.0", "libraries": {}}}
    assert dm.stale_reason(e, machine=amd, model_hash="sha256:aaa", versions=added) == "mlx was installed since"
    assert "not edgesmith.doctor" in dm.stale_reason({**e, "schema": "x/0"}, machine=amd, model_hash=None,
                                                     versions=VERSIONS)


def test_the_store_keeps_one_entry_per_machine_and_model_written_whole(tmp_path):
    store = tmp_path / "doctor" / dm.STORE
    amd, intel = machine("amd_nvidia"), machine("intel_core_ultra_npu")
    dm.save(store, entry_for(amd, created=1.0))
    dm.save(store, entry_for(intel, created=2.0))
    dm.save(store, entry_for(amd, created=3.0))  # replaces the first
    dm.save(store, entry_for(amd, "sha256:other", created=4.0, path="/other"))
    entries = dm.load_store(store)
    assert [e["created_unix"] for e in entries] == [2.0, 3.0, 4.0]
    assert not list(store.parent.glob(".*edgesmith-tmp*")) and not list(store.parent.glob("*.part"))
    found = dm.find(entries, amd.to_dict(), {"content_hash": "sha256:aaa", "path": "/m"})
    assert found["created_unix"] == 3.0
    # a changed model (another hash at the same path) finds its old entry, to be shown stale
    assert dm.find(entries, amd.to_dict(), {"content_hash": "sha256:new", "path": "/other"})["created_unix"] == 4.0
    assert dm.find(entries, amd.to_dict(), {"content_hash": "sha256:zzz", "path": "/none"}) is None
    store.write_text("{not json")
    assert dm.load_store(store) == []


def test_an_unchanged_model_is_not_hashed_again(tmp_path):
    model = tmp_path / "m.gguf"
    model.write_bytes(b"weights")
    first = dm.identify(model)
    assert first["content_hash"].startswith("sha256:")
    remembered = [{"model": {**first, "content_hash": "sha256:remembered"}}]
    assert dm.identify(model, remembered)["content_hash"] == "sha256:remembered"
    model.write_bytes(b"other weights")  # another size: the fingerprint differs, so it is hashed
    again = dm.identify(model, remembered)
    assert again["content_hash"] not in ("sha256:remembered", first["content_hash"])


def test_report_shows_age_spread_and_n():
    rep = dm.report(entry_for(machine("amd_nvidia")), LLAMA_RULE,
                    installed={"llamacpp": True, "olive": True, "openvino": True, "mlx": True})
    assert rep["age"] == "2 hours ago" and rep["verdict"]["backend"] == "olive"
    rows = dict(dm.lines(rep))
    assert rows["  1. olive int4-g32"] == "141.0 ± 3.0 tok/s (n=3)"
    assert rows["  -  qnn a16w8"].startswith("cannot run it here: qnn does not generate text")
    assert "64 prompt / 64 generated tokens, 3 runs" in rows["measurement"]
    stale = dict(dm.lines({**rep, "stale": "olive is no longer usable here"}))
    assert "not used: olive is no longer usable here" in stale[""]


# -- an optimize run as the source ----------------------------------------------

def summary_for(m):
    """An optimize summary as outputs.summary writes it (decode_tps: the median of the bench rows)."""
    def row(key, label, backend, tps, reference=False, errors=()):
        return {"key": key, "label": label, "backend": backend, "decode_tps": tps, "reference": reference,
                "errors": list(errors), "path": f"/opt/{key}", "format": "x", "size_bytes": 1}

    return {"schema": "edgesmith.optimize/1", "created": "2025-01-01T00:00:00+00:00", "machine": m.to_dict(),
            "model": {"path": "/models/smol", "format": "hf"}, "backends": VERSIONS, "targets": [
                {"name": "portable", "backend": "llamacpp", "rows": [
                    row("llamacpp/gguf-f16", "base", "llamacpp", 40.0, reference=True),
                    row("llamacpp/Q4_K_M", "Q4_K_M", "llamacpp", 74.0),
                    row("llamacpp/Q8_0", "Q8_0", "llamacpp", 90.0)]},
                {"name": "nvidia-gpu", "backend": "olive", "rows": [
                    row("olive/onnx-fp32", "base", "olive", 43.0, reference=True),
                    row("olive/int4-g32", "int4-g32", "olive", 141.0),
                    row("olive/int8", "int8", "olive", None, errors=["bench: worker died"])]},
                {"name": "apple-silicon", "backend": "mlx", "rows": [
                    row("mlx/4bit-g64", "4bit-g64", "mlx", None, errors=["bench: MLX failed"])]},
                {"name": "snapdragon-npu", "backend": None, "skipped": "qnn is not installed", "rows": []},
            ]}


def test_an_optimize_summary_as_the_measurement():
    s = summary_for(machine("amd_nvidia"))
    bench_rows = {"/opt/olive/int4-g32": [{"decode_tps": {"median": 140.0, "min": 1, "max": 2}},
                                          {"decode_tps": {"median": 141.0, "min": 138.0, "max": 144.0},
                                           "runs": [{}, {}, {}]}],
                  "/opt/llamacpp/Q4_K_M": [{"decode_tps": speed(74.0, 2.0)}]}
    stacks = {s.backend: s for s in dm.stacks_from_summary(s, 4, bench_rows)}
    # the 4-bit candidate, not the faster 8-bit one or the base; spreads from the bench rows it came from
    assert stacks["llamacpp"].label == "Q4_K_M" and stacks["llamacpp"].figure.kind == "mean ± sd"
    assert stacks["olive"].label == "int4-g32" and (stacks["olive"].figure.lo, stacks["olive"].figure.n) == (138.0, 3)
    assert stacks["mlx"].reason == "bench: MLX failed" and not stacks["mlx"].measured
    assert stacks["snapdragon-npu"].reason == "qnn is not installed"
    v = dm.decide(dm.rank(stacks.values()), *LLAMA_RULE)
    assert v.backend == "olive" and "1.91" in v.reason
    # without bench rows the figures have no spread, so nothing is told apart
    bare = dm.decide(dm.rank(dm.stacks_from_summary(s, 4)), *LLAMA_RULE)
    assert bare.backend == "llamacpp" and bare.tie and "the rule of thumb stands" in bare.reason
    # a summary that keeps each row's decode figure (mean, sd, n) needs no bench rows
    s2 = json.loads(json.dumps(s))
    s2["schema"] = "edgesmith.optimize/2"
    for t in s2["targets"]:
        for r in t["rows"]:
            if r["decode_tps"]:
                r["decode"] = speed(r["decode_tps"], 2.0)
    v2 = dm.decide(dm.rank(dm.stacks_from_summary(s2, 4)), *LLAMA_RULE)
    assert v2.backend == "olive" and not v2.tie and "olive int4-g32 141.0 ± 2.0 tok/s (n=3)" in v2.reason
    eight = {s.backend: s for s in dm.stacks_from_summary(s, 8)}
    assert eight["llamacpp"].label == "Q8_0" and eight["olive"].label == "int4-g32"  # int8 failed


# -- the command ------------------------------------------------------------------

def usable():
    from edgesmith import api

    return [r for r in api.backends() if r.usable]


def test_the_stored_entry_of_this_machine_and_model_is_found_and_checked(tmp_path):
    from edgesmith.doctor import detect_machine

    recs, here = usable(), detect_machine().to_dict()
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF not really")
    assert dm.stored(model, tmp_path, here, dm.current_versions(recs)) == (None, None)  # nothing stored
    e = {**entry_for(detect_machine(), versions=dm.current_versions(recs), stacks=[stack("ref", "w4", 5, 1)]),
         "model": {**dm.identify(model), "name": "model.gguf"}}
    dm.save(tmp_path / dm.STORE, e)
    found, stale = dm.stored(model, tmp_path, here, dm.current_versions(recs))
    assert found["model"]["path"] == str(model.resolve()) and stale is None
    model.write_bytes(b"GGUF changed since")
    found, stale = dm.stored(model, tmp_path, here, dm.current_versions(recs))
    assert found is not None and "another model" in stale
    assert dm.stored(tmp_path / "gone.gguf", tmp_path, here, {}) == (None, None)


def test_doctor_cli_shows_the_stored_measurement_and_uses_it(tmp_path, bigram):
    from edgesmith.doctor import detect_machine

    recs = usable()
    stacks = [stack("ref", "w4", 55.0, 1.5), stack("nosuch", "q4", 900.0, 1.0)]
    e = {**entry_for(detect_machine(), versions=dm.current_versions(recs), stacks=stacks),
         "model": {**dm.identify(bigram), "name": "bigram"}}
    dm.save(tmp_path / dm.STORE, e)
    args = ["doctor", "--model", str(bigram), "--cache", str(tmp_path)]
    out = CliRunner().invoke(main, [*args, "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    m = data["measurement"]
    assert m["stale"] is None and m["age"] == "2 hours ago"
    assert data["recommendation"]["backend"] == "ref"  # nosuch measured faster, but is not installed here
    assert data["recommendation"]["reason"].startswith("rule of thumb:")
    assert [u["backend"] for u in m["unusable"]] == ["nosuch"]
    human = CliRunner().invoke(main, args)
    assert human.exit_code == 0, human.output
    assert "55.0 ± 1.5 tok/s (n=3)" in human.output and "2 hours ago" in human.output
    assert "ref (measured with w4)" in human.output
    # a backend upgrade since: shown as not used, the rule of thumb decides
    changed = {k: {**v, "version": "9.9"} for k, v in dm.current_versions(recs).items()}
    dm.save(tmp_path / dm.STORE, {**e, "backends": changed})
    data = json.loads(CliRunner().invoke(main, [*args, "--json"]).output)
    assert "a backend changed since" in data["measurement"]["stale"]
    assert not data["recommendation"]["reason"].startswith("rule of thumb:")


def test_doctor_from_an_optimize_directory(tmp_path):
    from edgesmith.doctor import detect_machine

    s = summary_for(detect_machine())
    s["targets"].append({"name": "ref-cpu", "backend": "ref", "rows": [
        {"key": "ref/w4", "label": "w4", "backend": "ref", "decode_tps": 60.0, "reference": False,
         "errors": [], "path": str(tmp_path / "ref" / "w4")}]})
    (tmp_path / "summary.json").write_text(json.dumps(s))
    bench = tmp_path / ".optimize" / "measure"
    bench.mkdir(parents=True)
    (bench / "bench-1.json").write_text(json.dumps({"status": "ok", "path": str(tmp_path / "ref" / "w4"),
                                                    "decode_tps": speed(60.0, 0.5)}))
    out = CliRunner().invoke(main, ["doctor", "--from", str(tmp_path), "--json"])
    assert out.exit_code == 0, out.output
    m = json.loads(out.output)["measurement"]
    assert m["source"].startswith("optimize summary") and m["note"] is None
    assert "the optimize run measured:" in m["verdict"]["reason"] and m["age"].endswith("ago")
    ranked = {r["backend"]: r for r in m["ranking"]}
    assert ranked["ref"]["figure"]["sd"] == 0.5
    installed = {r.name for r in usable()}
    assert m["verdict"]["backend"] in installed
    s["machine"] = machine("apple_m3_pro").to_dict()
    (tmp_path / "summary.json").write_text(json.dumps(s))
    m = json.loads(CliRunner().invoke(main, ["doctor", "--from", str(tmp_path), "--json"]).output)["measurement"]
    assert m["note"].startswith("measured on another machine")


@pytest.mark.parametrize("args, needle", [
    (["--measure", "--model", "/no/such/model"], "--model /no/such/model does not exist"),
    (["--measure", "--from", "."], "not both"),
    (["--quick"], "add --measure"),
    (["--from", "/no/such/dir"], "no summary.json there"),
    (["--model", "/no/such/model"], "--model /no/such/model does not exist"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, needle):
    out = CliRunner().invoke(main, ["doctor", "--cache", str(tmp_path), *args])
    assert out.exit_code == 2, out.output
    lines = [ln for ln in out.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("edgesmith: error:") and needle in lines[0], out.output


def test_measure_with_no_text_stack_says_so_and_stores_nothing(tmp_path, bigram, ref_site):
    from .conftest import env_with

    # only the reference backend, which contributes no optimize target
    env = env_with(ref_site, EDGESMITH_LOCAL_ONLY="1",
                   EDGESMITH_DISABLE_BACKENDS="llamacpp,olive,openvino,mlx,qnn,transformers")
    out = subprocess.run([sys.executable, "-m", "edgesmith.cli", "doctor", "--measure", "--model", str(bigram),
                          "--cache", str(tmp_path), "--json"], capture_output=True, text=True, env=env,
                         timeout=300)
    assert out.returncode == 4, out.stderr[-2000:]
    data = json.loads(out.stdout)
    assert data["measurement"]["ranking"] == []
    why = {u["backend"]: u["reason"] for u in data["measurement"]["unusable"]}
    assert "contributes no optimize target" in why["ref"]
    assert all(r.startswith("disabled") for b, r in why.items() if b != "ref"), why
    assert out.stderr.strip().splitlines()[-1].startswith("edgesmith: error: no stack could be measured here")
    assert not (tmp_path / dm.STORE).exists()


def test_plain_doctor_imports_no_vendor_stack(tmp_path, bigram):
    code = ("import sys; from click.testing import CliRunner; from edgesmith.cli import main; "
            f"r = CliRunner().invoke(main, ['doctor', '--cache', {str(tmp_path)!r}, '--model', {str(bigram)!r}]); "
            "assert r.exit_code == 0, r.output; "
            "print([m for m in ('torch', 'openvino', 'onnxruntime', 'mlx', 'llama_cpp') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


@pytest.fixture(scope="module")
def bigram(tiny_model, tmp_path_factory) -> Path:
    from edgesmith.testing import bigram_checkpoint

    return bigram_checkpoint(tiny_model("llama"), tmp_path_factory.mktemp("bigram") / "model")
