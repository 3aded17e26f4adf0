"""The backend guide's example, built from the page and installed as a
third-party backend would be (`edgesmith install PATH`, an environment of its
own on the pins it ships): it is listed with its typed options, quantizes,
runs, and joins `edgesmith optimize` with a target of its own, with no core
change."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgesmith.testing import bigram_checkpoint
from edgesmith.testing.recipes import quick_recipe

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "backend-guide.md"
CLI = [sys.executable, "-m", "edgesmith.cli"]
#: The guide backend needs torch and transformers: the versions the project
#: tests them with (llama.cpp's lock holds both) are its pins.
PINS = ROOT / "packages" / "backend-llamacpp" / "src" / "edgesmith_llamacpp" / "pins.txt"


def _block(text: str, lang: str, needle: str) -> str:
    return next(b for b in re.findall(rf"```{lang}\n(.*?)```", text, re.S) if needle in b)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    text = GUIDE.read_text()
    pkg = tmp_path_factory.mktemp("guide") / "backend-rtn"
    src = pkg / "src" / "edgesmith_rtn"
    src.mkdir(parents=True)
    (pkg / "pyproject.toml").write_text(_block(text, "toml", 'name = "edgesmith-rtn"'))
    (src / "__init__.py").write_text("")
    (src / "plugin.py").write_text(_block(text, "python", "edgesmith_rtn.plugin"))
    shutil.copy(PINS, src / "pins.txt")
    env = {**os.environ, "EDGESMITH_HOME": str(pkg.parent / "home")}
    done = run("install", pkg, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return env


def run(*args, env):
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, env=env, timeout=900)


def test_listed_with_typed_options(env):
    out = run("backends", "rtn", "--json", env=env)
    assert out.returncode == 0, out.stderr
    rec = json.loads(out.stdout)
    assert rec["status"] == "available", rec
    assert rec["environment"]["source"].endswith("backend-rtn") and rec["libraries"]["torch"]
    ops = {o["label"]: o for o in rec["capabilities"]["operations"]}
    assert set(ops) == {"quantize hf", "load hf"}
    (skip,) = ops["quantize hf"]["options"]
    assert skip["name"] == "skip" and skip["kind"] == "str" and skip["default"] == "embed_tokens"


def test_quantize_and_its_errors(env, tiny_model, tmp_path):
    model = tiny_model("llama")
    q = run("quantize", model, "--bits", "4", "--backend", "rtn", "-o", tmp_path / "q", "--json", env=env)
    assert q.returncode == 0, q.stderr
    assert json.loads(q.stdout)["manifest"]["details"] == {"bits": 4, "skipped": "embed_tokens"}
    bad = run("quantize", model, "--bits", "12", "--backend", "rtn", "-o", tmp_path / "q2", env=env)
    assert bad.returncode == 2 and "--bits 2 to 8" in bad.stderr and not (tmp_path / "q2").exists()
    typo = run("quantize", model, "--bits", "4", "--backend", "rtn", "-O", "skipp=x", "-o", tmp_path / "q3", env=env)
    assert typo.returncode == 2 and "rtn quantize hf has no option 'skipp'; known options: skip" in typo.stderr


RECIPE = quick_recipe(["rtn-cpu"], prefer="size")


def test_joins_optimize_and_wins_its_target(env, tiny_model, tmp_path):
    # A bigram head makes the tiny model write varied text, so the smoke test means something.
    source = bigram_checkpoint(tiny_model("llama"), tmp_path / "source")
    (tmp_path / "recipe.toml").write_text(RECIPE)
    out = tmp_path / "opt"
    r = run("optimize", source, "--recipe", tmp_path / "recipe.toml", "-o", out, "--threads", "1", "--json",
            env=env)
    assert r.returncode == 0, r.stderr
    (target,) = json.loads((out / "summary.json").read_text())["targets"]
    assert target["name"] == "rtn-cpu" and target["backend"] == "rtn"
    # Its candidates were built, benchmarked and evaluated, and one of them won on size
    # (float16 storage against the float32 base) with the quality gates passed.
    rows = {r["label"]: r for r in target["rows"]}
    assert {"base", "rtn8", "rtn4"} <= set(rows)
    assert all(rows[k]["decode_tps"] and rows[k]["verdict"] for k in ("rtn8", "rtn4")), rows
    assert target["chosen"] and target["chosen"]["label"] in ("rtn8", "rtn4"), target["why"]
    assert (out / "rtn" / target["chosen"]["label"] / "edgesmith.json").is_file()
