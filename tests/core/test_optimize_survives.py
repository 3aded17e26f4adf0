"""optimize survives a failing target: any exception in a step or in a target's
measurements is recorded on that target with its reason and log, every other
target goes on, and summary.json, report.html and README.md are written."""

from __future__ import annotations

import json
import subprocess
import sys

from .conftest import env_with, make_site
from .test_measure_support import bigram, short_text  # noqa: F401 - fixtures
from .test_optimize import RECIPE

# A backend whose quantize dies of an arbitrary exception half way, as a vendor
# bug does (the Gemma 3 AttributeError of Olive's builder, say).
BOOM = '''
from edgesmith import BackendInfo, Operation, hookimpl

@hookimpl
def edgesmith_backend():
    return BackendInfo(name="boom", version="0.1", operations=[
        Operation("quantize", "hf", "edgesmith_boom.plugin:quantize"),
        Operation("load", "hf", "edgesmith_ref.plugin:load"),
    ])

def quantize(source, spec, options, output, ctx):
    (output / "half.bin").write_bytes(b"x")
    raise AttributeError("'Gemma3TextConfig' object has no attribute 'rope_local_base_freq'")
'''

TWO_TARGETS = RECIPE.replace('targets = ["ref-cpu"]', 'targets = ["boom-cpu", "ref-cpu"]') + """
[targets.boom-cpu]
backend = "boom"
format = "hf"
candidates = [{{ bits = 8 }}]
"""


def test_one_target_failing_costs_only_that_target(bigram, ref_site, short_text, tmp_path):  # noqa: F811
    site = make_site(tmp_path / "site", "boom", "edgesmith_boom.plugin",
                     {"edgesmith_boom/__init__.py": "", "edgesmith_boom/plugin.py": BOOM})
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(TWO_TARGETS.format(text=short_text))
    out = tmp_path / "opt"
    p = subprocess.run([sys.executable, "-m", "edgesmith.cli", "optimize", str(bigram), "--recipe", str(recipe),
                        "-o", str(out), "--threads", "1"], capture_output=True, text=True,
                       env=env_with(ref_site, site), timeout=600)
    assert p.returncode == 0, p.stderr  # one target chose
    summary = json.loads((out / "summary.json").read_text())
    by = {t["name"]: t for t in summary["targets"]}
    assert by["ref-cpu"]["chosen"], by["ref-cpu"]["why"]
    step = summary["steps"]["boom/int8"]
    assert step["status"] == "failed" and "AttributeError" in step["error"] and "rope_local_base_freq" in step["error"]
    assert "Traceback" in open(step["log"]).read()
    boom_rows = {r["key"]: r for r in by["boom-cpu"]["rows"]}
    assert "rope_local_base_freq" in " ".join(boom_rows["boom/int8"]["errors"])
    assert (out / "report.html").is_file() and (out / "README.md").is_file()
    assert not (out / "boom" / "int8").exists()  # the half-written step left nothing


def test_a_measurement_that_raises_is_recorded_on_its_target(bigram, ref_site, short_text, tmp_path,  # noqa: F811
                                                           monkeypatch):
    from edgesmith.optimize import job, measuring

    ref_target = RECIPE.split("[targets.ref-cpu]")[1]
    recipe = tmp_path / "recipe.toml"
    recipe.write_text((RECIPE.replace('targets = ["ref-cpu"]', 'targets = ["ref-cpu", "ref-too"]')
                       + "\n[targets.ref-too]" + ref_target).format(text=short_text))
    real = measuring.eval_target
    calls = []

    def flaky(*args, **kwargs):
        calls.append(args)
        if len(calls) == 2:  # the second target's evaluation
            raise KeyError("a figure the report expected")
        return real(*args, **kwargs)

    monkeypatch.setattr(measuring, "eval_target", flaky)
    out = tmp_path / "opt"
    summary = job.optimize(bigram, out, recipe=recipe, threads=1)
    by = {t["name"]: t for t in summary["targets"]}
    assert by["ref-cpu"]["chosen"], by["ref-cpu"]["why"]
    assert by["ref-too"]["chosen"] is None and "measuring failed: KeyError" in by["ref-too"]["why"]
    assert (out / "summary.json").is_file() and (out / "report.html").is_file() and (out / "README.md").is_file()
