"""``edgesmith optimize`` on the numpy reference backend: the whole job, the
resume after an interrupt, recipes and their errors."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import env_with
from .test_measure_support import bigram, short_text  # noqa: F401 - fixtures

RECIPE = """
[optimize]
targets = ["ref-cpu"]
prefer = "speed"

[gates]
max_ppl_ratio = 1.5
min_top1 = 0.5

[bench]
prompt_tokens = 16
gen_tokens = 8
repeat = 1
warmup = 0

[eval]
window = 64
windows = 2
smoke_tokens = 8
text = "{text}"

[targets.ref-cpu]
title = "numpy on any CPU"
backend = "ref"
format = "hf"
candidates = [
  {{ label = "w4", bits = 4, group_size = 64 }},
  {{ bits = 8 }},
]
"""


@pytest.fixture
def recipe(tmp_path, short_text) -> Path:  # noqa: F811
    p = tmp_path / "recipe.toml"
    p.write_text(RECIPE.format(text=short_text))
    return p


def _default_sigint() -> None:
    # A job started in the background of a non-interactive shell (as CI may do)
    # inherits SIGINT ignored, and Python then never raises KeyboardInterrupt.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _cli(*args: str, env: dict[str, str], **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "edgesmith.cli", "optimize", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint, **kw)


def test_interrupted_optimize_resumes_without_redoing_finished_steps(bigram, recipe, ref_site,  # noqa: F811
                                                                     tmp_path):
    out = tmp_path / "out"
    env = env_with(ref_site, EDGESMITH_REF_QUANTIZE_DELAY="2", HF_HUB_OFFLINE="1")
    args = [str(bigram), "--recipe", str(recipe), "-o", str(out), "--threads", "1"]
    proc = _cli(*args, env=env)
    first = out / "ref" / "w4" / "edgesmith.json"
    deadline = time.monotonic() + 120
    while not first.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert first.exists(), proc.communicate()
    proc.send_signal(signal.SIGINT)  # the second quantize step is sleeping now
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "rerun the same command to continue" in err
    assert not (out / "ref" / "int8").exists()
    assert not [p for p in (out / "ref").iterdir() if p.name.startswith(".")], "a partial step was left"
    created = json.loads(first.read_text())["created"]
    mtime = first.stat().st_mtime_ns

    proc = _cli(*args, "--json", env=env)
    stdout, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert "ref/w4: quantize" in err and "reused (finished earlier)" in err
    assert first.stat().st_mtime_ns == mtime and json.loads(first.read_text())["created"] == created
    summary = json.loads(stdout)
    steps = summary["steps"]
    assert steps["ref/w4"]["status"] == "reused" and steps["ref/int8"]["status"] == "done"
    (target,) = summary["targets"]
    assert {r["key"] for r in target["rows"]} == {"model", "ref/w4", "ref/int8"}
    assert all(r["decode_tps"] and r["perplexity"] for r in target["rows"]), target["rows"]
    for name in ("summary.json", "report.html", "README.md"):
        assert (out / name).is_file()

    # A third run measures nothing again either.
    proc = _cli(*args, env=env)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert err.count("reused (measured earlier)") == 4 and "running" not in err, err  # 3 bench + 1 eval


def test_changed_parameters_redo_only_that_step(bigram, recipe, ref_site, tmp_path):  # noqa: F811
    from edgesmith import api
    from edgesmith.optimize.execute import Hashes, stale_reason
    from edgesmith.optimize.plan import Step

    out = tmp_path / "q"
    api.quantize(bigram, out, bits=4, group_size=64, backend="ref")
    step = Step("q", "quantize", "ref", "model", {"bits": 4, "group_size": 64})
    assert stale_reason(step, out, bigram, Hashes()) is None
    step.call["group_size"] = 32
    assert stale_reason(step, out, bigram, Hashes()) == "its parameters changed"
    other = tmp_path / "other"
    import shutil

    shutil.copytree(bigram, other)
    (other / "config.json").write_text((other / "config.json").read_text() + "\n")
    step.call["group_size"] = 64
    assert stale_reason(step, out, other, Hashes()) == "its source changed"


def test_dry_run_shows_the_plan_and_builds_nothing(bigram, recipe, tmp_path):  # noqa: F811
    from edgesmith.optimize import optimize

    lines: list[str] = []
    out = tmp_path / "plan-only"
    doc = optimize(bigram, out, recipe=recipe, dry_run=True, say=lines.append)
    assert not out.exists()
    keys = [s["key"] for s in doc["plan"]["steps"]]
    assert keys == ["ref/w4", "ref/int8"]
    assert any("target ref-cpu" in line for line in lines)


@pytest.mark.parametrize("body, message", [
    ("[optimize]\ntargetz = ['portable']\n", "unknown key 'targetz'"),
    ("[optimize]\nprefer = 'fast'\n", "'fast' is not one of speed, size, quality"),
    ("[gates]\nmax_ppl_ratio = true\n", "expected int or float"),
    ("[targets.mine]\ncandidates = [{bits = 4}]\n", "a new target needs backend and format"),
    # A recipe's own target, so the cases hold with no backend contributing one.
    ("[targets.mine]\nbackend = 'ref'\nformat = 'hf'\ncandidates = [{group_size = 32}]\n", "give bits or scheme"),
    ("[targets.mine]\nbackend = 'ref'\nformat = 'hf'\ncandidates = [{bits = 4, calibration = true}]\n", "needs [optimize] calibration"),
    ("[targets.mine]\nbackend = 'ref'\nformat = 'hf'\ncandidates = [{bits = 4, label = 'a'}, {bits = 8, label = 'a'}]\n",
     "two candidates are labelled 'a'"),
    ("[optimize]\ncalibration = 'nope.txt'\n", "nope.txt does not exist"),
    ("[optimize\n", "is not valid TOML"),
])
def test_recipe_errors_name_the_key(tmp_path, body, message):
    from edgesmith.errors import UserError
    from edgesmith.optimize.recipe import load

    p = tmp_path / "r.toml"
    p.write_text(body)
    with pytest.raises(UserError, match=None) as exc:
        load(p)
    assert message in str(exc.value)
    assert "\n" not in str(exc.value)


def test_output_written_by_someone_else_is_refused(bigram, tmp_path):  # noqa: F811
    from edgesmith.errors import UserError
    from edgesmith.optimize import optimize

    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="not written by optimize"):
        optimize(bigram, out, targets=["portable"], dry_run=True)
    assert (out / "notes.txt").read_text() == "keep me"


def test_vendor_output_on_stdout_does_not_corrupt_json(bigram, ref_site, tmp_path):  # noqa: F811
    env = env_with(ref_site, EDGESMITH_REF_NOISE="1", HF_HUB_OFFLINE="1")
    r = subprocess.run([sys.executable, "-m", "edgesmith.cli", "quantize", str(bigram), "--bits", "8",
                        "-o", str(tmp_path / "q8"), "--backend", "ref", "--json"],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["format"] == "hf"
    assert "noise from Python" in r.stderr and "noise from C" in r.stderr
