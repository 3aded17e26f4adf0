"""`edgesmith bench`: figures, definitions, and isolation of each artifact."""

from __future__ import annotations

import importlib
import json
import shutil
import sys

import pytest
from click.testing import CliRunner

from edgesmith.plugins import reset_manager

from .conftest import make_site
from .test_measure_support import CLI, bigram, short_text  # noqa: F401 - fixtures

# A backend that runs hf models with the reference runner but dies of SIGSEGV
# on an artifact holding a file named CRASH, as a vendor library can.
CRASHING_BACKEND = '''
import os, signal
from pathlib import Path
from edgesmith import BackendInfo, Operation, hookimpl

@hookimpl
def edgesmith_backend():
    return BackendInfo(name="aacrash", version="0.1",
                       operations=[Operation("load", "hf", "edgesmith_aacrash.plugin:load")])

def load(artifact, options, ctx):
    if (Path(artifact.path) / "CRASH").exists():
        os.kill(os.getpid(), signal.SIGSEGV)
    from edgesmith_ref.runner import NumpyRunner
    return NumpyRunner(Path(artifact.path))
'''

FAST = ["--prompt-tokens", "12", "--gen-tokens", "3", "--repeat", "2", "--threads", "1",
        "--bandwidth-mib", "16"]


@pytest.fixture
def crashing_backend(tmp_path):
    site = make_site(tmp_path / "site", "aacrash", "edgesmith_aacrash.plugin",
                     {"edgesmith_aacrash/__init__.py": "", "edgesmith_aacrash/plugin.py": CRASHING_BACKEND})
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    reset_manager()
    yield
    sys.path.remove(str(site))
    sys.modules.pop("edgesmith_aacrash.plugin", None)
    sys.modules.pop("edgesmith_aacrash", None)
    reset_manager()


def test_bench_reports_every_figure_and_survives_broken_artifacts(
        bigram, short_text, tmp_path, crashing_backend):  # noqa: F811
    crash = tmp_path / "crash"
    shutil.copytree(bigram, crash)
    (crash / "CRASH").write_text("")
    corrupt = tmp_path / "corrupt"
    shutil.copytree(bigram, corrupt)
    (corrupt / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not safetensors")
    out = CliRunner().invoke(CLI, ["bench", str(crash), str(bigram), str(corrupt), *FAST,
                                   "--text", str(short_text), "--json"])
    assert out.exit_code == 4, out.output
    doc = json.loads(out.stdout)
    assert doc["schema"] == "edgesmith.bench/2"
    for key in ("ttft_s", "prefill_tps", "decode_tps", "peak_rss_mb", "roofline_fraction"):
        assert key in doc["definitions"]
    assert doc["settings"]["threads"] == 1 and doc["bandwidth"]["gb_per_s"] > 0
    crashed, good, broken = doc["artifacts"]
    assert crashed["status"] == "error" and crashed["error_kind"] == "crash"
    assert "SIGSEGV" in crashed["error"]
    assert broken["status"] == "error" and broken["error_kind"] in ("internal", "user")
    assert good["status"] == "ok" and good["backend"]["name"] == "aacrash"
    assert good["prompt_tokens"] == 12 and good["generated_tokens"] == [3, 3]
    assert not good["eos_early"]
    for key in ("ttft_s", "prefill_tps", "decode_tps"):
        s = good[key]
        assert 0 < s["min"] <= s["median"] <= s["max"] and s["min"] <= s["mean"] <= s["max"]
        assert s["n"] == 2 and s["sd"] >= 0 and s["lo"] <= s["mean"] <= s["hi"]
    assert good["load_s"] > 0 and good["peak_rss_mb"] > good["rss_before_load_mb"] > 1
    assert good["size_bytes"] >= good["weights_bytes"] > 0
    # decode reads every weight once but one row of the embedding table, not all of it
    counted = good["decode_bytes"]
    assert 0 < counted["bytes"] < good["weights_bytes"], counted
    expected = good["decode_tps"]["mean"] * counted["bytes"] / (doc["bandwidth"]["gb_per_s"] * 1e9)
    assert good["roofline_fraction"] == pytest.approx(expected)
    assert [t["name"] for t in good["tests"]] == ["pp12+tg3"]
    assert "could not be measured" in out.stderr and "SIGSEGV" in out.stderr


def test_bench_table_and_usage_errors(bigram, short_text, tmp_path):  # noqa: F811
    out = CliRunner().invoke(CLI, ["bench", str(bigram), *FAST, "--text", str(short_text)])
    assert out.exit_code == 0, out.output
    assert "decode tok/s" in out.stdout and bigram.name in out.stdout and " ± " in out.stdout
    assert "measuring memory bandwidth" in out.stderr  # progress while it runs
    missing = CliRunner().invoke(CLI, ["bench", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "does not exist" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1


def test_bench_shapes_sweeps_depths_and_llama_bench(bigram, short_text):  # noqa: F811
    base = ["--threads", "1", "--text", str(short_text), "--bandwidth-mib", "8", "--json"]
    out = CliRunner().invoke(CLI, ["bench", str(bigram), "-N", "8,16", "--depth", "4", "-M", "3", "-K", "2",
                                   "--warmup", "0", *base])
    assert out.exit_code == 0, out.output
    row = json.loads(out.stdout)["artifacts"][0]
    tests = {t["name"]: t for t in row["tests"]}
    assert list(tests) == ["pp8+tg3", "pp16+tg3", "tg3@d4"]
    assert [tests[n]["prompt_tokens"] for n in tests] == [8, 16, 4]
    assert all(t["decode_tps"]["n"] == 2 for t in tests.values())
    # the headline figures are the first test's; the KV cache it reads grows with the depth
    assert row["decode_test"] == "pp8+tg3" and row["prompt_tokens"] == 8
    kv = [tests[n]["decode_bytes"]["kv_cache"] for n in ("tg3@d4", "pp8+tg3", "pp16+tg3")]
    assert kv[0] < kv[1] < kv[2], kv
    out = CliRunner().invoke(CLI, ["bench", str(bigram), "--llama-bench", "-N", "16", "-M", "4", "-K", "2",
                                   "--warmup", "0", *base])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    row = doc["artifacts"][0]
    assert doc["settings"]["tests"] == ["pp16", "tg4"] and doc["settings"]["llama_bench"]
    pp, tg = row["tests"]
    assert pp["gen_tokens"] == 1 and pp["prefill_tps"]["n"] == 2 and pp["decode_tps"]["mean"] is None
    assert tg["generated_tokens"] == [5, 5] and tg["prompt_tokens"] <= 2  # 4 decode steps from an empty cache
    assert row["decode_test"] == "tg4" and row["prompt_tokens"] == 16
    # a shape longer than the context is skipped with its reason; the others still run
    ctx = json.loads((bigram / "config.json").read_text())["max_position_embeddings"]
    out = CliRunner().invoke(CLI, ["bench", str(bigram), "-N", f"8,{ctx}", "-M", "3", "-K", "1", "--warmup", "0",
                                   *base])
    assert out.exit_code == 0, out.output
    skipped = json.loads(out.stdout)["artifacts"][0]["tests"][1]
    assert "do not fit the context" in skipped["skipped"]
