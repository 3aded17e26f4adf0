"""The core installs on its own: a fresh venv with only `edgesmith` lists no
backends (as valid JSON) and identifies a tiny checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_core_alone_in_a_fresh_venv(tmp_path, tiny_model):
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    str(ROOT / "packages" / "core")], check=True, timeout=900)
    exe = str(env_dir / "bin" / "edgesmith")
    # No backend environment registered either (the suite's own are elsewhere).
    env = {**os.environ, "EDGESMITH_HOME": str(tmp_path / "home")}
    out = subprocess.run([exe, "backends", "--json"], capture_output=True, text=True, check=True, env=env)
    assert json.loads(out.stdout) == []
    human = subprocess.run([exe, "backends"], capture_output=True, text=True, check=True, env=env)
    assert "no backends installed" in human.stdout
    info = subprocess.run([exe, "inspect", str(tiny_model("phi3")), "--json"], capture_output=True,
                          text=True, check=True, env=env)
    data = json.loads(info.stdout)
    assert data["format"] == "hf" and data["architecture"] == "Phi3ForCausalLM"
    assert data["backends"] == {}
    # Nothing but the core (and its light dependencies) went in.
    listed = subprocess.run([str(py), "-m", "pip", "list", "--format=json"], capture_output=True,
                            text=True, check=True)
    names = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert "edgesmith" in names and not names & {"torch", "openvino", "mlx", "onnxruntime"}
    assert sys.executable != str(py)
