"""Discovery through real entry points, isolation of broken backends, and the
promise that listing backends stays light (no vendor stack imported)."""

from __future__ import annotations

import json
import subprocess
import sys

from edgesmith.testing.conformance import HEAVY_MODULES

from .conftest import env_with, make_site

BROKEN_IMPORT = "raise ImportError('libvendor.so: cannot open shared object file')\n"
MISSPELLED = (
    "from edgesmith import hookimpl, BackendInfo\n"
    "@hookimpl\ndef edgesmith_backend():\n    return BackendInfo(name='typo', version='1')\n"
    "@hookimpl\ndef edgesmith_convrt(source, target, options, output, ctx):\n    return None\n"
)
BAD_INFO = (
    "from edgesmith import hookimpl\n"
    "@hookimpl\ndef edgesmith_backend():\n    raise RuntimeError('vendor probe crashed')\n"
)


def cli(*args, env):
    return subprocess.run([sys.executable, "-m", "edgesmith.cli", *args], capture_output=True,
                          text=True, env=env, timeout=120)


def test_reference_backend_is_discovered(ref_site):
    out = cli("backends", "--json", env=env_with(ref_site))
    assert out.returncode == 0, out.stderr
    recs = {r["name"]: r for r in json.loads(out.stdout)}
    assert recs["ref"]["status"] == "available"
    assert recs["ref"]["distribution"] == "edgesmith_ref_test"
    assert ["hf", "hf"] in recs["ref"]["capabilities"]["quantizes"]


def test_broken_backends_are_isolated(ref_site, tmp_path):
    broken = make_site(tmp_path / "b1", "broken", "edgesmith_broken", {"edgesmith_broken.py": BROKEN_IMPORT})
    typo = make_site(tmp_path / "b2", "typo", "edgesmith_typo", {"edgesmith_typo.py": MISSPELLED})
    crash = make_site(tmp_path / "b3", "crash", "edgesmith_crash", {"edgesmith_crash.py": BAD_INFO})
    env = env_with(ref_site, broken, typo, crash)
    out = cli("backends", "--json", env=env)
    assert out.returncode == 0, out.stderr
    recs = {r["name"]: r for r in json.loads(out.stdout)}
    assert recs["broken"]["status"] == "failed" and "libvendor.so" in recs["broken"]["reason"]
    assert recs["typo"]["status"] == "failed" and "edgesmith_convrt" in recs["typo"]["reason"]
    assert recs["crash"]["status"] == "failed" and "vendor probe crashed" in recs["crash"]["reason"]
    assert recs["ref"]["status"] == "available"
    # The failure is logged with the backend's name and distribution.
    assert "broken (edgesmith_broken_test 0.1) failed to load" in out.stderr
    # The human table shows it too, and other commands still work.
    table = cli("backends", env=env)
    assert table.returncode == 0 and "failed" in table.stdout
    tiny = tmp_path / "m"
    subprocess.run([sys.executable, "-c", f"from edgesmith.testing import tiny_checkpoint; tiny_checkpoint({str(tiny)!r})"],
                   check=True)
    q = cli("quantize", str(tiny), "--bits", "8", "-o", str(tmp_path / "q"), "--json", env=env)
    assert q.returncode == 0, q.stderr
    assert json.loads(q.stdout)["manifest"]["backend"]["name"] == "ref"


def test_disable_env_blocks_backends(ref_site):
    out = cli("backends", "--json", env=env_with(ref_site, EDGESMITH_DISABLE_BACKENDS="ref,other"))
    recs = {r["name"]: r for r in json.loads(out.stdout)}
    assert recs["ref"]["status"] == "disabled"
    assert "edgesmith_ref" not in out.stderr


def test_listing_backends_imports_no_vendor_stack(ref_site):
    code = (
        "import sys, json\n"
        "from edgesmith.cli import main\n"
        "try:\n    main(['backends', '--json'])\nexcept SystemExit:\n    pass\n"
        f"print(json.dumps(sorted(m for m in {HEAVY_MODULES!r} if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env_with(ref_site), timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_core_alone_lists_valid_json_even_when_empty(tmp_path):
    # Only the core's own entry points: the real ones installed here plus none added.
    out = cli("backends", "--json", env=env_with())
    assert out.returncode == 0
    assert isinstance(json.loads(out.stdout), list)
