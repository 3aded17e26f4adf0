"""Nothing lost, whatever the user types: sources, existing outputs, races and leftovers.

Each test names the case of the nothing-lost issue it covers. They run the
real CLI on the numpy reference backend (its quantize can be slowed down with
EDGESMITH_REF_QUANTIZE_DELAY, so a second run can start while the first works).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgesmith.claim import LOCK_SUFFIX, TMP_MARK, atomic_output, claim, write_file
from edgesmith.cli import main
from edgesmith.errors import UserError
from edgesmith.testing.cli import invoke, one_line_error

from .conftest import env_with
from .test_measure_support import bigram, short_text  # noqa: F401 - fixtures
from .test_optimize import recipe  # noqa: F401 - fixture


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from edgesmith.testing import tiny_checkpoint

    return tiny_checkpoint(tmp_path_factory.mktemp("lost") / "tiny", "llama")




def snapshot(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if TMP_MARK in p.name or p.name.endswith(LOCK_SUFFIX))


# -- case 1: --force never deletes the source ----------------------------------------

@pytest.mark.parametrize("where", ["itself", "parent", "inside"])
def test_output_may_not_be_hold_or_sit_in_the_source(model, tmp_path, where):
    parent = tmp_path / "parent"
    src = parent / "src"
    shutil.copytree(model, src)
    (parent / "sibling.txt").write_text("keep me")
    before, sibling = snapshot(src), (parent / "sibling.txt").read_text()
    out = {"itself": src, "parent": parent, "inside": src / "q"}[where]
    needle = {"itself": "is the source itself", "parent": "holds the source", "inside": "inside the source"}
    one_line_error(invoke("quantize", src, "--bits", "8", "-o", out, "--force"), needle[where])
    assert snapshot(src) == before and (parent / "sibling.txt").read_text() == sibling
    assert not leftovers(parent) and not leftovers(src)


def test_source_reached_through_a_symlink_is_still_the_source(model, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(model, src)
    (tmp_path / "alias").symlink_to(src)
    before = snapshot(src)
    one_line_error(invoke("quantize", tmp_path / "alias", "--bits", "8", "-o", src, "--force"), "source")
    assert snapshot(src) == before


# -- case 2: two runs on one output: exactly one wins ---------------------------------

def _cli(args, env):
    return subprocess.Popen([sys.executable, "-m", "edgesmith.cli", *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(pred, seconds=60.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


def _error_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.startswith("edgesmith: error:")]


def test_two_quantize_runs_on_one_output(model, ref_site, tmp_path):
    out = tmp_path / "race"
    slow = env_with(ref_site, EDGESMITH_REF_QUANTIZE_DELAY="3")
    first = _cli(["quantize", model, "--scheme", "rtn8", "-o", out], slow)
    _wait_for(lambda: (tmp_path / f".race{LOCK_SUFFIX}").exists())
    second = _cli(["quantize", model, "--scheme", "rtn4", "-o", out], env_with(ref_site))
    err2 = second.communicate(timeout=120)[1]
    err1 = first.communicate(timeout=120)[1]
    assert first.returncode == 0, err1
    assert second.returncode == 2, err2
    assert len(_error_lines(err2)) == 1 and "another edgesmith run" in err2, err2
    manifest = json.loads((out / "edgesmith.json").read_text())
    assert manifest["operation"]["parameters"]["spec"]["scheme"] == "rtn8"
    assert not leftovers(tmp_path)
    # Once the winner is done, a later run without --force is refused as before.
    late = _cli(["quantize", model, "--scheme", "rtn4", "-o", out], env_with(ref_site))
    assert late.wait(timeout=120) == 2 and "already exists" in late.stderr.read()


def test_started_together_one_wins(model, ref_site, tmp_path):
    out = tmp_path / "together"
    env = env_with(ref_site, EDGESMITH_REF_QUANTIZE_DELAY="1")
    runs = [_cli(["quantize", model, "--scheme", s, "-o", out], env) for s in ("rtn8", "rtn4")]
    results = [(p.communicate(timeout=120)[1], p.returncode) for p in runs]
    assert sorted(code for _, code in results) == [0, 2], results
    loser = next(err for err, code in results if code == 2)
    assert len(_error_lines(loser)) == 1
    winner = ("rtn8", "rtn4")[[code for _, code in results].index(0)]
    manifest = json.loads((out / "edgesmith.json").read_text())
    assert manifest["operation"]["parameters"]["spec"]["scheme"] == winner
    assert not leftovers(tmp_path)


def _race(runs, env):
    """Start the runs together; (stderr, exit code) of each."""
    procs = [_cli(args, env) for args in runs]
    return [(p.communicate(timeout=300)[1], p.returncode) for p in procs]


def _one_winner(results):
    codes = [code for _, code in results]
    assert sorted(codes) == [0, 2], results
    loser = results[codes.index(2)][0]
    assert len(_error_lines(loser)) == 1 and "another edgesmith run" in loser, loser
    return codes.index(0)


def test_two_optimize_runs_in_one_directory(bigram, recipe, ref_site, tmp_path):  # noqa: F811
    out = tmp_path / "opt"
    env = env_with(ref_site, EDGESMITH_REF_QUANTIZE_DELAY="2")
    args = ["optimize", bigram, "--recipe", recipe, "-o", out, "--threads", "1"]
    _one_winner(_race([args, args], env))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["targets"] and (out / "report.html").is_file() and (out / "README.md").is_file()
    assert not leftovers(tmp_path)


def test_two_bench_runs_on_one_report(model, ref_site, tmp_path):
    report = tmp_path / "r.html"
    args = ["bench", model, "--report", report, "-M", "8", "-K", "2"]
    _one_winner(_race([args, args], env_with(ref_site)))
    assert "<html" in report.read_text().lower() and not leftovers(tmp_path)


def test_a_claimed_certificate_is_refused(model, ref_site, tmp_path):
    cert = tmp_path / "c.json"
    with claim(cert):  # another run at work on it
        p = _cli(["eval", model, "--reference", model, "--certify", cert], env_with(ref_site))
        err = p.communicate(timeout=300)[1]
    assert p.returncode == 2 and "another edgesmith run" in err, err
    assert not cert.exists()


def test_report_and_certificate_need_force(model, tmp_path):
    report = tmp_path / "r.html"
    report.write_text("mine")
    one_line_error(invoke("bench", model, "--report", report), "already exists", "--force")
    cert = tmp_path / "c.json"
    cert.write_text("mine")
    one_line_error(invoke("eval", model, "--reference", model, "--certify", cert), "already exists")
    assert report.read_text() == "mine" and cert.read_text() == "mine"
    one_line_error(invoke("bench", model, "--report", model / "config.json", "--force"), "source")


# -- case 3: outputs that cannot be swapped are refused before any work -----------------

def test_current_directory_refused_before_work(model, tmp_path, monkeypatch):
    work = tmp_path / "here"
    work.mkdir()
    (work / "notes.txt").write_text("mine")
    monkeypatch.chdir(work)
    one_line_error(invoke("quantize", model, "--bits", "8", "-o", ".", "--force"), "current directory")
    one_line_error(invoke("quantize", model, "--bits", "8", "-o", "..", "--force"), "current directory")
    assert sorted(p.name for p in work.iterdir()) == ["notes.txt"]
    assert not leftovers(tmp_path)


def _mount_tmpfs(where: Path, options: str) -> bool:
    where.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                          capture_output=True).returncode == 0


@contextlib.contextmanager
def tmpfs(where: Path, options: str):
    if not _mount_tmpfs(where, options):
        pytest.skip("needs root to mount a tmpfs")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_mount_point_refused(model, tmp_path):
    with tmpfs(tmp_path / "mnt", "size=64m") as mnt:
        (mnt / "old").write_text("mine")
        one_line_error(invoke("quantize", model, "--bits", "8", "-o", mnt, "--force"), "mount point")
        assert (mnt / "old").read_text() == "mine"


def test_failed_swap_restores_and_cleans_up(tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old").write_text("old")
    real_replace = os.replace

    def busy(src, dst):
        if Path(dst) == out and "old-" not in Path(src).name:  # the new output cannot go in
            raise OSError(errno.EBUSY, "Device or resource busy")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", busy)
    with pytest.raises(UserError, match="cannot move the finished output"):
        with atomic_output(out, force=True) as tmp:
            (tmp / "new").write_text("new")
    assert (out / "old").read_text() == "old" and not (out / "new").exists()
    assert not leftovers(tmp_path)


# -- case 4: leftovers of a killed run are removed by the next run ---------------------

def test_stale_staging_removed_live_kept(model, tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".q{TMP_MARK}{dead.pid}-deadbeef"
    stale_old = tmp_path / f".q{TMP_MARK}old-{dead.pid}-cafebabe"
    live = tmp_path / f".q{TMP_MARK}1-0badf00d"  # pid 1 is alive: somebody else's work
    for d in (stale, stale_old, live):
        d.mkdir()
        (d / "model.bin").write_bytes(b"x")
    r = invoke("quantize", model, "--bits", "8", "-o", tmp_path / "q")
    assert r.exit_code == 0, r.output
    assert not stale.exists() and not stale_old.exists() and live.exists()


def test_kill_9_mid_quantize_then_rerun(model, ref_site, tmp_path):
    out = tmp_path / "q"
    p = _cli(["quantize", model, "--bits", "8", "-o", out], env_with(ref_site, EDGESMITH_REF_QUANTIZE_DELAY="30"))
    _wait_for(lambda: any(TMP_MARK in n.name for n in tmp_path.iterdir()))
    p.kill()
    p.wait()
    assert not out.exists() and any(TMP_MARK in n.name for n in tmp_path.iterdir())
    r = invoke("quantize", model, "--bits", "8", "-o", out)  # no --force needed
    assert r.exit_code == 0, r.output
    assert (out / "edgesmith.json").is_file() and not leftovers(tmp_path)


# -- case 5: a failed run removes the folders it created --------------------------------

def test_failed_run_removes_parents_it_created(model, tmp_path):
    # The reference backend refuses this group size inside its handler, after the
    # output's parents were made: the failure must take them away again.
    bad = ("--bits", "8", "--group-size", "48")
    one_line_error(invoke("quantize", model, *bad, "-o", tmp_path / "a" / "b" / "c"), "group size 48")
    assert not (tmp_path / "a").exists()
    # Folders that were there before stay.
    (tmp_path / "keep").mkdir()
    one_line_error(invoke("quantize", model, *bad, "-o", tmp_path / "keep" / "x" / "y"))
    assert (tmp_path / "keep").is_dir() and not (tmp_path / "keep" / "x").exists()


# -- case 6: the pickle guard decides by what the loader reads -------------------------

def test_pickle_guard_not_fooled_by_unrelated_safetensors(model, tmp_path):
    src = tmp_path / "mixed"
    shutil.copytree(model, src)
    (src / "model.safetensors").rename(src / "adapter.safetensors")
    (src / "pytorch_model.bin").write_bytes(b"PK\x03\x04" + b"\0" * 64)
    one_line_error(invoke("quantize", src, "--bits", "8", "-o", tmp_path / "o"), "pickle", "--allow-pickle")
    # With model.safetensors beside it, transformers loads the safetensors: allowed.
    shutil.copy(src / "adapter.safetensors", src / "model.safetensors")
    (src / "adapter.safetensors").unlink()
    r = invoke("quantize", src, "--bits", "8", "-o", tmp_path / "o2")
    assert r.exit_code == 0, r.output


# -- case 8: one error discipline --------------------------------------------------------

def test_truncated_and_garbled_safetensors(model, tmp_path):
    src = tmp_path / "trunc"
    shutil.copytree(model, src)
    w = src / "model.safetensors"
    data = w.read_bytes()
    w.write_bytes(data[: len(data) - 100])
    one_line_error(invoke("quantize", src, "--bits", "8", "-o", tmp_path / "o"), "truncated")
    r = invoke("inspect", src, "--json")
    assert r.exit_code == 0, r.output
    assert "truncated" in json.loads(r.output)["warnings"][0]
    for garbage in (os.urandom(4096), b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all", b"\xff" * 8):
        w.write_bytes(garbage)
        one_line_error(invoke("inspect", src), "not a readable safetensors file")
        one_line_error(invoke("quantize", src, "--bits", "8", "-o", tmp_path / "o"), "safetensors")
    assert not (tmp_path / "o").exists()


def test_unwritable_outputs(model, tmp_path):
    (tmp_path / "afile").write_text("x")
    one_line_error(invoke("quantize", model, "--bits", "8", "-o", tmp_path / "afile" / "out"), "is a file")
    with tmpfs(tmp_path / "ro", "ro,size=1m") as ro:
        one_line_error(invoke("quantize", model, "--bits", "8", "-o", ro / "out"), "read-only")


def test_full_disk(model, tmp_path):
    with tmpfs(tmp_path / "small", "size=256k") as small:
        one_line_error(invoke("quantize", model, "--bits", "8", "-o", small / "out"), "full")
        assert list(small.iterdir()) == []


def deep_gguf(path):
    """A GGUF whose one metadata value is an array of arrays, 5000 deep."""
    import struct

    key = b"evil"
    body = struct.pack("<Q", len(key)) + key + struct.pack("<I", 9)
    for _ in range(5000):  # array of array of ... (type 9 = array)
        body += struct.pack("<IQ", 9, 1)
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + body)
    return path


def test_deeply_nested_gguf_metadata(tmp_path):
    from edgesmith import gguffile

    f = deep_gguf(tmp_path / "deep.gguf")
    # The direct parser (inspect, and the llama.cpp backend's loader and export) used
    # to recurse until RecursionError; now a depth limit names the problem.
    with pytest.raises(UserError, match="nested more than 8 deep"):
        gguffile.read(f)
    one_line_error(invoke("inspect", f), "not a readable GGUF file", "nested more than")


def test_empty_prompt(model):
    one_line_error(invoke("run", model, "-p", ""), "prompt is empty")


def test_click_usage_errors_are_one_line(model, tmp_path):
    line = one_line_error(invoke("convert", model, "--to", "bogus", "-o", tmp_path / "o"), "bogus")
    assert "--help" in line
    one_line_error(invoke("run", model, "-p", "hi", "--threads", "abc"), "abc")
    one_line_error(invoke("frobnicate"), "frobnicate")
    one_line_error(invoke("convert", model), "--to")


def test_debug_after_the_subcommand_keeps_the_exit_code(tmp_path):
    r = CliRunner().invoke(main, ["inspect", str(tmp_path / "nope"), "--debug"])
    assert r.exit_code == 2
    assert "Traceback" in r.output and r.output.strip().splitlines()[-1].startswith("edgesmith: error:")


def test_bench_and_eval_of_a_non_model_exit_2(model, tmp_path):
    (tmp_path / "junk").mkdir()
    one_line_error(invoke("bench", tmp_path / "junk"), "cannot tell what model")
    one_line_error(invoke("eval", tmp_path / "junk", "--reference", model), "cannot tell what model")


def test_write_file_is_exclusive_without_force(tmp_path):
    target = tmp_path / "f.txt"
    write_file(target, "one", force=False)
    with pytest.raises(UserError, match="already exists"):
        write_file(target, "two", force=False)
    write_file(target, "three", force=True)
    assert target.read_text() == "three" and not leftovers(tmp_path)


def test_scratch_of_a_dead_run_is_swept(tmp_path):
    from edgesmith.scratch import scratch_dir, sweep_temp

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f"edgesmith-qnn-hub-{dead.pid}-deadbeef"
    live = tmp_path / "edgesmith-llamacpp-1-0badf00d"  # pid 1 is alive
    for d in (stale, live):
        d.mkdir()
    assert sweep_temp(tmp_path) == [stale] and live.exists()
    with scratch_dir("eval") as work:
        assert work.is_dir() and f"-{os.getpid()}-" in work.name
    assert not work.exists()
