"""Docs that match the code: the hook reference is generated from the
hookspecs, and the backend guide's example backend really works."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from .conftest import env_with, make_site

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_hook_reference_is_current():
    sys.path.insert(0, str(DOCS))
    try:
        import gen_hooks
    finally:
        sys.path.remove(str(DOCS))
    assert (DOCS / "hooks.md").read_text() == gen_hooks.render(), "run: python docs/gen_hooks.py"


def test_guide_backend_works(tmp_path, tiny_model):
    text = (DOCS / "backend-guide.md").read_text()
    code = next(b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "edgesmith_rtn.plugin" in b)
    site = make_site(tmp_path / "site", "rtn", "edgesmith_rtn.plugin",
                     {"edgesmith_rtn/__init__.py": "", "edgesmith_rtn/plugin.py": code})
    env = env_with(site)
    cli = [sys.executable, "-m", "edgesmith.cli"]
    out = subprocess.run([*cli, "backends", "--json"], capture_output=True, text=True, env=env)
    rec = {r["name"]: r for r in json.loads(out.stdout)}["rtn"]
    assert rec["status"] == "available", rec
    q = subprocess.run([*cli, "quantize", str(tiny_model("llama")), "--bits", "4", "--backend", "rtn",
                        "-o", str(tmp_path / "q"), "--json"], capture_output=True, text=True, env=env)
    assert q.returncode == 0, q.stderr
    manifest = json.loads(q.stdout)["manifest"]
    assert manifest["details"] == {"bits": 4, "skipped": "embed_tokens"}
    bad = subprocess.run([*cli, "quantize", str(tiny_model("llama")), "--bits", "12", "--backend", "rtn",
                          "-o", str(tmp_path / "q2")], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "--bits 2 to 8" in bad.stderr and not (tmp_path / "q2").exists()
