"""Stacks whose pins conflict, side by side: from an environment that holds
only the core, one `optimize` builds and measures OpenVINO and MLX targets,
each in its own environment on its own transformers; the OpenVINO
environment exports Gemma 3, which optimum-intel refuses beside mlx-lm's
transformers."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.version import Version

from edgesmith import api
from edgesmith.testing import bigram_checkpoint
from edgesmith.testing.recipes import quick_recipe

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "edgesmith.cli"]

RECIPE = quick_recipe(["intel-cpu", "apple-silicon"])


def _pinned(backend: str, package: str) -> str:
    pins = ROOT / "packages" / f"backend-{backend}" / "src" / f"edgesmith_{backend}" / "pins.txt"
    return re.search(rf"^{package}==(\S+)", pins.read_text(), re.M).group(1)


@pytest.fixture(scope="module")
def environments():
    recs = {r.name: r for r in api.backends()}
    for name in ("openvino", "mlx"):
        if name not in recs or recs[name].environment is None:
            pytest.skip(f"{name} is not in a backend environment here (nox -s tests installs one per backend)")
        assert recs[name].usable, recs[name].reason
    return recs


def test_one_optimize_builds_and_measures_both_stacks_on_their_own_pins(environments, tiny_model, tmp_path):
    # This process holds neither vendor stack: everything below ran in their environments.
    assert importlib.util.find_spec("openvino") is None and importlib.util.find_spec("mlx") is None
    source = bigram_checkpoint(tiny_model("llama", intermediate_size=768), tmp_path / "source")
    (tmp_path / "recipe.toml").write_text(RECIPE)
    out = tmp_path / "out"
    r = subprocess.run([*CLI, "optimize", source, "--recipe", tmp_path / "recipe.toml", "-o", out, "--json"],
                       capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stderr[-3000:]
    s = json.loads((out / "summary.json").read_text())
    by = {t["name"]: t for t in s["targets"]}
    assert set(by) == {"intel-cpu", "apple-silicon"}
    for t in by.values():
        measured = [row for row in t["rows"] if row["decode_tps"] and row["verdict"]]
        assert len(measured) >= 2, t["rows"]
        assert t["chosen"], t["why"]
    ov, mlx = s["backends"]["openvino"], s["backends"]["mlx"]
    assert ov["environment"] == str(environments["openvino"].environment.path)
    assert mlx["environment"] == str(environments["mlx"].environment.path)
    # Each on the transformers its own pins name: two releases in one run.
    assert ov["libraries"]["transformers"] == _pinned("openvino", "transformers")
    assert mlx["libraries"]["transformers"] == _pinned("mlx", "transformers")
    assert Version(mlx["libraries"]["transformers"]) >= Version("5.7")
    assert ov["libraries"]["transformers"] != mlx["libraries"]["transformers"]
    # The manifests of what was built say the same.
    for t, backend in (("intel-cpu", "openvino"), ("apple-silicon", "mlx")):
        chosen = Path(by[t]["chosen"]["path"])
        manifest = json.loads((chosen / "edgesmith.json").read_text())
        assert manifest["libraries"]["transformers"] == s["backends"][backend]["libraries"]["transformers"]


def test_openvino_environment_exports_gemma3(environments, tmp_path):
    from edgesmith.testing.archs import arch_checkpoint

    source = arch_checkpoint(tmp_path / "gemma3", "gemma3")
    out = tmp_path / "ir"
    c = subprocess.run([*CLI, "convert", source, "--to", "openvino", "-o", out, "--json"],
                       capture_output=True, text=True, timeout=1200)
    assert c.returncode == 0, c.stderr[-3000:]
    manifest = json.loads((out / "edgesmith.json").read_text())
    assert Version(manifest["libraries"]["transformers"]) < Version("5.7")
    g = subprocess.run([*CLI, "run", out, "-p", "Once upon a time", "--max-tokens", "8", "--json"],
                       capture_output=True, text=True, timeout=600)
    assert g.returncode == 0, g.stderr[-3000:]
    assert json.loads(g.stdout)["generated_tokens"] >= 1
