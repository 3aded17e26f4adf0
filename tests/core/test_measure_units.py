"""Pieces of the measuring code that need no worker process."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import pytest

from edgesmith import api
from edgesmith.measure import bandwidth, gates, scoring, smoke
from edgesmith.measure.text import DEFAULT_TEXT, exact_prompt, load_text, special_prefix, windows

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_default_text_is_long_real_prose_with_documented_provenance(tiny_model):
    text, name = load_text(None)
    assert "Alice" in name and len(text.split()) > 20_000
    with api.load(tiny_model("llama")) as runner:
        assert len(runner.tokenize(text, add_special=False)) > 20_000
    doc = (DOCS / "measuring.md").read_text()
    digest = hashlib.sha256(text.encode()).hexdigest()
    assert digest in doc, "docs/measuring.md must name the shipped text's sha256"
    assert DEFAULT_TEXT.split("/")[-1] in doc


def test_prompt_has_exactly_the_asked_tokens(tiny_model):
    text = load_text(None)[0]
    with api.load(tiny_model("llama")) as runner:
        for n in (1, 7, 64, 300):
            prompt, got = exact_prompt(runner.tokenize, runner.detokenize, text, n)
            assert got == n and len(runner.tokenize(prompt)) == n
        assert special_prefix(runner.tokenize) == []


def test_windows_cover_the_ids_without_overlap():
    assert windows(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert windows(9, 4) == [(0, 4), (4, 8)]  # a one-token tail scores nothing
    assert windows(100, 10, limit=2) == [(0, 10), (10, 20)]


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return (z - np.log(np.exp(z).sum(axis=1, keepdims=True))).astype(np.float32)


@pytest.mark.parametrize("top_k", [3, 50])
def test_kl_is_exact_with_the_whole_vocabulary_and_a_lower_bound_without(tmp_path, top_k):
    rng = np.random.default_rng(0)
    chunk = list(rng.integers(0, 50, 9))
    p = _log_softmax(rng.standard_normal((9, 50)) * 2)
    q = _log_softmax(rng.standard_normal((9, 50)) * 2)
    ref = scoring.reference_window(p, 0, chunk, top_k, tmp_path / "w.npz")
    got = scoring.compare_window(q, 0, chunk, tmp_path / "w.npz")
    exact = float((np.exp(p[:8].astype(np.float64)) * (p[:8] - q[:8])).sum())
    if top_k >= 50:
        assert got["kl"] == pytest.approx(exact, rel=1e-5)
    else:
        assert 0 < got["kl"] < exact and ref["tail"] > 0
    same = scoring.compare_window(p, 0, chunk, tmp_path / "w.npz")
    assert same["kl"] == pytest.approx(0, abs=1e-9) and same["top1"] == 8
    assert same["nll"] == pytest.approx(ref["nll"])
    assert ref["nll"] == pytest.approx(-sum(p[i, chunk[i + 1]] for i in range(8)), rel=1e-6)


def test_smoke_checks():
    assert smoke.check("", []) == "empty output"
    assert smoke.check("   ", [5, 6]) == "empty output"
    assert "repeated" in smoke.check("ababab", [9, 9, 9, 9])
    assert "invalid text" in smoke.check("\ufffd\ufffd\ufffdok", [1, 2, 3, 4])
    assert "invalid text" in smoke.check("\x00\x01\x02a", [1, 2, 3, 4])
    assert smoke.check("The river bent\nsouth.", [1, 2, 3, 4]) is None
    assert smoke.summarize([{"prompt": "a", "problem": None}])["passed"]
    assert not smoke.summarize([{"prompt": "a", "problem": "empty output"}])["passed"]


def test_gates_name_the_failure_and_the_margin():
    figures = {"ppl_ratio": 1.2, "top1": 0.97, "size_ratio": 0.3, "speedup": None,
               "smoke": {"passed": True, "failures": []}}
    results = {r["gate"]: r for r in gates.check(gates.Gates(), figures)}
    assert results["max_ppl_ratio"]["passed"] is False
    assert "0.15 over the limit 1.05 (--max-ppl-ratio)" in results["max_ppl_ratio"]["detail"]
    assert results["min_top1"]["passed"] and results["max_size_ratio"]["passed"]
    assert results["min_speedup"]["passed"] is None  # nothing measured: not checked
    assert gates.verdict(list(results.values())) == "fail"
    off = gates.check(gates.Gates(max_ppl_ratio=None), figures)
    assert "max_ppl_ratio" not in {r["gate"] for r in off} and gates.verdict(off) == "pass"


def test_bandwidth_is_a_plausible_rate():
    bw = bandwidth.measure(threads=2, nbytes=16 * 2**20, passes=2)
    assert 0.1 < bw["gb_per_s"] < 10_000 and math.isfinite(bw["best_seconds"])
    assert set(bw["by_threads"]) == {"1", "2"}


def test_cli_module_imports_light():
    import subprocess
    import sys

    code = ("import sys, edgesmith.measure.cli; "
            "heavy = [m for m in ('numpy', 'matplotlib', 'edgesmith.measure.worker') if m in sys.modules]; "
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def _bench_row(path: Path, size: int, decode: float) -> dict:
    from edgesmith.measure.uncertainty import speed_figure

    s = speed_figure([decode * 0.9, decode, decode * 1.1])
    return {"path": str(path), "name": path.name, "format": "hf", "size_bytes": size,
            "weights_bytes": size, "status": "ok", "backend": {"name": "ref"}, "load_s": 0.1,
            "ttft_s": s, "prefill_tps": s, "decode_tps": s, "peak_rss_mb": 50.0,
            "roofline_fraction": 0.25, "eos_early": False}


def test_report_joins_speed_and_quality_by_path(tmp_path):
    pytest.importorskip("matplotlib")
    from edgesmith.measure import report

    ref, q4, bad = tmp_path / "ref", tmp_path / "q4", tmp_path / "bad"
    bench = {"created": "now", "environment": {}, "settings": {"threads": 1},
             "definitions": {"decode_tps": "d"},
             "bandwidth": {"gb_per_s": 10.0, "method": "copy", "array_bytes": 2**28, "threads": 1},
             "artifacts": [_bench_row(ref, 4 * 2**20, 50.0), _bench_row(q4, 2**20, 120.0),
                           {"path": str(bad), "name": "bad", "size_bytes": 10, "weights_bytes": 10,
                            "status": "error", "error": "killed by SIGSEGV"}]}
    smoke_ok = {"passed": True, "failures": [], "samples": [{"prompt": "p", "text": "<b>t</b>", "problem": None}]}
    evaluation = {"settings": {"window": 8}, "definitions": {"kl": "k"},
                  "reference": {"path": str(ref), "name": "ref", "size_bytes": 4 * 2**20, "perplexity": 10.0,
                                "backend": {"name": "ref"}, "smoke": smoke_ok},
                  "artifacts": [{"path": str(q4), "name": "q4", "size_bytes": 2**20, "status": "ok",
                                 "backend": {"name": "ref"}, "perplexity": 10.4, "ppl_ratio": 1.04,
                                 "kl": 0.01, "top1": 0.93, "smoke": smoke_ok, "decode_tps": 100.0,
                                 "verdict": "pass", "gates": []}]}
    rows = report.merge(bench, evaluation)
    assert [r["name"] for r in rows] == ["ref", "q4", "bad"]
    assert rows[1]["decode_tps"] == 120.0 and rows[1]["ppl_ratio"] == 1.04  # bench speed wins
    files = report.write(tmp_path / "r" / "page.html", bench=bench, evaluation=evaluation)
    assert sorted(p.name for p in files[1:]) == ["page-roofline.png", "page-size-quality.png",
                                                 "page-size-speed.png", "page-speed.png", "page-top1.png"]
    page = files[0].read_text()
    assert page.count("data:image/png;base64,") == 5 and "killed by SIGSEGV" in page
    assert "120.0 ± 12.0" in page  # speeds are mean ± sd
    assert "&lt;b&gt;t&lt;/b&gt;" in page  # model output is escaped, never markup


def test_speed_gate_reads_bench_figures_only():
    from edgesmith.measure.uncertainty import speed_figure, speed_ratio

    fast, slow = speed_figure([150, 152, 149, 151, 150]), speed_figure([50, 51, 49, 50, 50])
    ratio = speed_ratio(fast, slow)
    assert ratio["value"] == pytest.approx(3.0, rel=0.01) and ratio["lo"] < 3.0 < ratio["hi"]
    smoke_ok = {"passed": True, "failures": []}
    checks = {g["gate"]: g for g in gates.check(gates.Gates(), {"speedup": ratio["value"], "smoke": smoke_ok},
                                                {"speedup": ratio})}
    assert checks["min_speedup"]["state"] == "pass"
    # no bench figure: the gate is not checked (a smoke test's timings are never used)
    checks = {g["gate"]: g for g in gates.check(gates.Gates(), {"speedup": None, "smoke": smoke_ok})}
    assert checks["min_speedup"]["state"] == "unchecked" and "--speed BENCH.json" in checks["min_speedup"]["detail"]
    # 1.02 ± a lot: undecided, not a pass
    noisy = speed_ratio(speed_figure([100, 140, 70]), speed_figure([100, 98, 101]))
    checks = {g["gate"]: g for g in gates.check(gates.Gates(), {"speedup": noisy["value"], "smoke": smoke_ok},
                                                {"speedup": noisy})}
    assert checks["min_speedup"]["state"] == "undecided" and checks["min_speedup"]["passed"] is None
