"""``edgesmith doctor --measure`` for real, from the environment that holds only
the core: one 4-bit artifact per stack built in each backend's environment,
each benchmarked there, ranked with its spread, stored, and used by a plain
``doctor`` afterwards."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time

import pytest

from edgesmith import api
from edgesmith.testing import bigram_checkpoint

NEEDED = {"llamacpp", "openvino", "olive", "mlx"}
CLI = [sys.executable, "-m", "edgesmith.cli", "doctor"]


@pytest.fixture(scope="module")
def measured(tiny_model, tmp_path_factory) -> dict:
    usable = {r.name for r in api.backends() if r.usable}
    if not NEEDED <= usable:
        pytest.skip(f"needs {', '.join(sorted(NEEDED))}; missing {', '.join(sorted(NEEDED - usable))}")
    tmp = tmp_path_factory.mktemp("doctor-measure")
    source = bigram_checkpoint(tiny_model("llama", intermediate_size=768), tmp / "source")
    cache = tmp / "cache"  # never the user's EDGESMITH_HOME/doctor
    t0 = time.monotonic()
    run = subprocess.run([*CLI, "--measure", "--quick", "--model", str(source), "--cache", str(cache), "--json"],
                         capture_output=True, text=True, timeout=900)
    return {"run": run, "seconds": time.monotonic() - t0, "source": source, "cache": cache,
            "data": json.loads(run.stdout) if run.stdout.strip() else None}


def test_every_stack_is_measured_with_its_spread(measured):
    run = measured["run"]
    assert run.returncode == 0, run.stderr[-3000:]
    # this process holds no vendor stack: everything ran in the backends' environments
    assert importlib.util.find_spec("openvino") is None and importlib.util.find_spec("mlx") is None
    m = measured["data"]["measurement"]
    by = {r["backend"]: r for r in m["ranking"]}
    assert NEEDED <= set(by), (m["ranking"], m["unusable"])
    for backend in NEEDED:
        f = by[backend]["figure"]
        assert f["n"] >= 2 and f["value"] > 0 and f["kind"] in ("mean ± sd", "median (min–max)"), by[backend]
        assert by[backend]["bits"] == 4, by[backend]
        if f["kind"] == "mean ± sd":
            assert f["sd"] is not None and f["lo"] < f["value"] < f["hi"]
    assert [r["figure"]["value"] for r in m["ranking"]] == sorted((r["figure"]["value"] for r in m["ranking"]),
                                                                  reverse=True)
    assert {by[b]["label"] for b in NEEDED} == {"Q4_K_M", "int4-g64", "int4-g32", "4bit-g64"}
    # progress went to stderr while it worked; stdout is the JSON alone
    assert "edgesmith: doctor: bench olive int4-g32" in run.stderr


def test_the_recommendation_is_the_fastest_or_a_stated_tie(measured):
    data = measured["data"]
    m, rec = data["measurement"], data["recommendation"]
    v = m["verdict"]
    assert rec["backend"] == v["backend"] and rec["reason"].startswith(v["reason"])
    top = m["ranking"][0]
    if v["tie"]:
        tied = [r for r in m["ranking"] if f"{r['backend']} {r['label']}" in v["tie"]]
        assert v["backend"] in {r["backend"] for r in tied} and "a tie within the noise" in v["reason"]
        # the tie is real: each tied stack's interval overlaps the fastest's
        for r in tied:
            assert r["figure"]["lo"] <= top["figure"]["hi"] and top["figure"]["lo"] <= r["figure"]["hi"]
    else:
        assert v["backend"] == top["backend"] and f"{top['backend']} {top['label']}" in v["reason"]
        assert all(r["figure"]["hi"] < top["figure"]["lo"] for r in m["ranking"][1:])
    rule = data["rule_of_thumb"]["backend"]
    if v["backend"] != rule:
        assert v["reason"].startswith(f"rule of thumb: {rule or 'none'} (") and "measured here:" in v["reason"]
    # what cannot run the model is listed with its reason and never recommended
    for u in m["unusable"]:
        assert u["reason"] and u["backend"] != rec["backend"]
    if "qnn" in {r.name for r in api.backends() if r.usable}:
        assert any(u["backend"] == "qnn" and "no such NPU" in u["reason"] for u in m["unusable"])


def test_artifacts_are_cached_whole_and_the_result_is_stored(measured):
    cache = measured["cache"]
    entries = json.loads((cache / "measured.json").read_text())["entries"]
    assert len(entries) == 1 and entries[0]["model"]["path"] == str(measured["source"].resolve())
    root = cache / entries[0]["model"]["content_hash"].split(":")[1][:16]
    for r in measured["data"]["measurement"]["ranking"]:
        assert (root / r["backend"] / r["label"] / "edgesmith.json").is_file(), r
    assert not [p for p in cache.rglob("*") if ".edgesmith-tmp-" in p.name]
    assert set(entries[0]["backends"]) >= NEEDED


def test_plain_doctor_uses_the_stored_measurement(measured):
    args = [*CLI, "--model", str(measured["source"]), "--cache", str(measured["cache"])]
    later = subprocess.run([*args, "--json"], capture_output=True, text=True, timeout=300)
    assert later.returncode == 0, later.stderr[-3000:]
    data = json.loads(later.stdout)
    m = data["measurement"]
    assert m["source"] == "measured" and m["stale"] is None and m["age"]
    assert data["recommendation"]["backend"] == measured["data"]["recommendation"]["backend"]
    human = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert human.returncode == 0, human.stderr[-3000:]
    assert "measured here for source" in human.stdout and "tok/s (n=" in human.stdout


def test_it_is_quick_enough_for_ci(measured):
    assert measured["run"].returncode == 0
    assert measured["seconds"] < 300, f"doctor --measure --quick took {measured['seconds']:.0f} s"
