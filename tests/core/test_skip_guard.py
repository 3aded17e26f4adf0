"""With every backend required (as `nox -s tests` runs), a skipped test fails
the run unless tests/conftest.py allows it with a reason: a green suite proves
that each backend's tests ran."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from .conftest import env_with

CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"
SKIPPING = """
import pytest
pytest.importorskip("no_such_vendor_stack", reason="edgesmith-probe is not installed with its stack")

def test_never():
    pass
"""


def _run(tmp_path: Path, required: str, site: Path) -> subprocess.CompletedProcess:
    shutil.copy(CONFTEST, tmp_path / "conftest.py")
    (tmp_path / "test_probe.py").write_text(SKIPPING)
    (tmp_path / "test_fine.py").write_text("def test_fine():\n    pass\n")
    env = env_with(site, EDGESMITH_REQUIRE_BACKENDS=required)
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs", str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)


def test_an_unexpected_skip_fails_the_run_when_backends_are_required(tmp_path, ref_site):
    done = _run(tmp_path, "ref", ref_site)  # the reference backend is what tests/core provides
    assert done.returncode == 1, done.stdout
    assert "skipped that must run" in done.stdout and "test_probe.py" in done.stdout


def test_the_same_skip_passes_when_nothing_is_required(tmp_path, ref_site):
    assert _run(tmp_path, "", ref_site).returncode == 0


def test_a_required_backend_that_is_missing_stops_the_run(tmp_path, ref_site):
    done = _run(tmp_path, "ref,nosuch", ref_site)
    assert done.returncode != 0 and "nosuch (not installed)" in done.stderr
