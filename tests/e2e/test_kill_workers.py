"""Fault injection: SIGKILL every kind of out-of-process worker mid-job (and two
real conversions racing for one output).

Workers are llama.cpp's converter (a child of `edgesmith convert --to gguf`)
and the measuring worker (a child of `bench`/`eval`). For each, killing the
edgesmith process must take the worker down with it, and the next run on the
same output must succeed without --force and leave no staging or scratch
directory; killing the worker itself must end the run with one line.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from edgesmith.claim import LOCK_SUFFIX, TMP_MARK
from edgesmith.testing.fixtures import env_offline


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(entry.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_for(pred, seconds=180.0, what="condition"):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _cli(*args, **extra_env):
    env = {**env_offline(), **extra_env}
    return subprocess.Popen([sys.executable, "-m", "edgesmith.cli", *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _worker_of(proc: subprocess.Popen, marker: str) -> int:
    def find():
        for pid in _children(proc.pid):
            try:
                if marker in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                    return pid
            except OSError:
                pass
        return None

    return _wait_for(find, what=f"the {marker} worker")


def _scratch_of(pid: int) -> list[Path]:
    return [p for p in Path(tempfile.gettempdir()).glob(f"edgesmith-*-{pid}-*")]


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if TMP_MARK in p.name or p.name.endswith(LOCK_SUFFIX))


@pytest.fixture(scope="module")
def checkpoint(tiny_model):
    return tiny_model("llama")


def test_killed_convert_takes_its_converter_with_it(checkpoint, tmp_path):
    out = tmp_path / "gguf"
    p = _cli("convert", checkpoint, "--to", "gguf", "-o", out)
    worker = _worker_of(p, "edgesmith.worker")
    p.send_signal(signal.SIGKILL)
    p.wait()
    _wait_for(lambda: not _alive(worker), seconds=10, what="the converter to die with its parent")
    assert not out.exists()
    assert _leftovers(tmp_path), "the killed run's staging directory should still be there"
    again = _cli("convert", checkpoint, "--to", "gguf", "-o", out)
    err = again.communicate(timeout=600)[1]
    assert again.returncode == 0, err
    assert (out / "model.gguf").is_file() and (out / "edgesmith.json").is_file()
    assert not _leftovers(tmp_path)
    assert not _scratch_of(p.pid), "the killed run's scratch directory was not removed"


def test_killed_converter_ends_the_run_in_one_line(checkpoint, tmp_path):
    out = tmp_path / "gguf"
    p = _cli("convert", checkpoint, "--to", "gguf", "-o", out)
    os.kill(_worker_of(p, "edgesmith.worker"), signal.SIGKILL)
    err = p.communicate(timeout=120)[1]
    assert p.returncode == 1, err
    lines = [ln for ln in err.splitlines() if ln.startswith("edgesmith:") and "error" in ln]
    assert len(lines) == 1 and "SIGKILL" in lines[0], err
    assert not out.exists() and not _leftovers(tmp_path) and not _scratch_of(p.pid)


@pytest.fixture(scope="module")
def gguf(checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("kill-gguf") / "gguf"
    p = _cli("convert", checkpoint, "--to", "gguf", "-o", out)
    assert p.wait(timeout=600) == 0, p.stderr.read()
    return out


@pytest.mark.parametrize("command", ["bench", "eval"])
def test_killed_measure_takes_its_worker_with_it(gguf, tmp_path, command):
    report = tmp_path / "r.html"
    base = [command, gguf, "--report", report] + (["--reference", gguf] if command == "eval" else [])
    long, short = (["-K", "5000", "-M", "64"], ["-K", "1", "-M", "4"]) if command == "bench" else \
        ([], ["--windows", "1", "--smoke-tokens", "2"])
    p = _cli(*base, *long)
    worker = _worker_of(p, "edgesmith.worker")
    time.sleep(1.0)  # let the worker load the model and start measuring
    p.send_signal(signal.SIGKILL)
    p.wait()
    _wait_for(lambda: not _alive(worker), seconds=10, what="the measuring worker to die with its parent")
    assert not report.exists()
    again = _cli(*base, *short)
    err = again.communicate(timeout=600)[1]
    assert again.returncode in (0, 3), err  # 3: a quality gate failed, which is not this test's concern
    assert report.is_file() and not _leftovers(tmp_path)
    assert not _scratch_of(p.pid)


def test_killed_measure_worker_is_reported(gguf, tmp_path):
    p = _cli("bench", gguf, "-K", "5000", "-M", "64")
    os.kill(_worker_of(p, "edgesmith.worker"), signal.SIGKILL)
    err = p.communicate(timeout=120)[1]
    assert p.returncode == 4, err
    assert "SIGKILL" in err


def test_two_converts_on_one_output(checkpoint, tmp_path):
    """Not a kill, the other half of the claim: two real conversions started together."""
    out = tmp_path / "gguf"
    procs = [_cli("convert", checkpoint, "--to", "gguf", "-o", out, "--dtype", d) for d in ("f16", "f32")]
    results = [(p.communicate(timeout=600)[1], p.returncode) for p in procs]
    codes = [c for _, c in results]
    assert sorted(codes) == [0, 2], results
    loser = results[codes.index(2)][0]
    assert [ln for ln in loser.splitlines() if ln.startswith("edgesmith: error:")] == \
        [ln for ln in loser.splitlines() if "another edgesmith run" in ln], loser
    manifest = json.loads((out / "edgesmith.json").read_text())
    assert manifest["details"]["dtype"] == ("f16", "f32")[codes.index(0)]
    assert not _leftovers(tmp_path)
