"""Figures with their noise: intervals that cover what they claim, gates that
say undecided inside the noise, and a sequential evaluation that stops early
on a clear case and spends its budget on a close one."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from edgesmith import api
from edgesmith.measure import gates
from edgesmith.measure import uncertainty as unc
from edgesmith.measure.text import load_text

from .test_measure_support import CLI, bigram, broken_copy  # noqa: F401 - fixtures


def test_student_t_quantiles():
    assert unc.t975(1) == pytest.approx(12.706) and unc.t975(30) == pytest.approx(2.042)
    assert unc.t975(60) == pytest.approx(2.000, abs=2e-3) and unc.t975(10**6) == pytest.approx(1.960, abs=1e-3)
    assert unc.t975(0) == math.inf


def _correlated_windows(rng, windows, width, p, rho):
    """Per-window hit counts of a top-1-like figure whose tokens share a
    window-level effect (some passages are harder than others)."""
    hard = rng.normal(0, rho, windows)
    probs = np.clip(p + hard, 0, 1)
    return rng.binomial(width, probs).astype(float), np.full(windows, float(width))


def test_window_intervals_cover_the_truth_where_token_intervals_do_not():
    # 400 simulated evaluations of 16 windows x 128 tokens with a strong window
    # effect: the cluster interval covers the true share about 95 % of the time;
    # an interval that treats tokens as independent is far too narrow.
    rng = np.random.default_rng(3)
    cover = naive_cover = 0
    for _ in range(400):
        hits, n = _correlated_windows(rng, 16, 128, 0.85, 0.08)
        f = unc.mean_figure(hits, n, 0, 1)
        cover += f["lo"] <= 0.85 <= f["hi"]
        share = hits.sum() / n.sum()
        half = 1.96 * math.sqrt(share * (1 - share) / n.sum())
        naive_cover += share - half <= 0.85 <= share + half
    assert 0.90 <= cover / 400 <= 0.99, cover
    assert naive_cover / 400 < 0.80, naive_cover


def test_exp_and_percentile_figures():
    rng = np.random.default_rng(0)
    diffs = rng.normal(0.05, 0.5, 20) * 100  # per-window sums of log-likelihood differences
    f = unc.exp_figure(diffs, [100] * 20)
    assert f["lo"] < f["value"] < f["hi"] and f["value"] == pytest.approx(math.exp(diffs.sum() / 2000))
    assert f["lo"] > 0  # a ratio's interval stays positive
    one = unc.exp_figure([5.0], [100])
    assert one["lo"] is None and one["se"] is None  # one window: no honest interval
    kl = [rng.exponential(0.01, 128) for _ in range(12)]
    p99 = unc.percentile_figure(kl, 99)
    assert p99["lo"] <= p99["value"] <= p99["hi"] and p99["se"] > 0
    assert p99 == unc.percentile_figure(kl, 99)  # a fixed seed: the same data, the same interval


def test_speed_figures():
    f = unc.speed_figure([100.0, 102.0, 98.0, 101.0, 99.0])
    assert f["mean"] == 100.0 and f["n"] == 5 and f["sd"] == pytest.approx(math.sqrt(2.5))
    assert f["lo"] == pytest.approx(100 - 2.776 * math.sqrt(2.5) / math.sqrt(5), rel=1e-3)
    assert unc.speed_figure([50.0])["sd"] is None
    assert unc.text(f, ".1f") == "100.0 ± 1.6"


@pytest.mark.parametrize("lo, hi, kind, state", [
    (0.86, 0.90, "min", "pass"), (0.80, 0.84, "min", "fail"), (0.84, 0.86, "min", "undecided"),
    (1.00, 1.04, "max", "pass"), (1.06, 1.09, "max", "fail"), (1.04, 1.06, "max", "undecided"),
])
def test_gates_read_the_interval(lo, hi, kind, state):
    key = "top1" if kind == "min" else "ppl_ratio"
    g = gates.Gates(min_top1=0.85, max_ppl_ratio=1.05, max_size_ratio=None, min_speedup=None, smoke=False)
    value = (lo + hi) / 2
    rec = next(r for r in gates.check(g, {key: value}, {key: {"value": value, "lo": lo, "hi": hi}})
               if r["figure"] == key)
    assert rec["state"] == state and rec["passed"] == {"pass": True, "fail": False}.get(state)
    assert gates.verdict([rec]) == state
    assert gates.wants_tokens([rec]) == (state == "undecided")


@pytest.fixture(scope="module")
def long_text(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "long.txt"
    path.write_text(load_text(None)[0][:40000])
    return path


def _eval(*args):
    out = CliRunner().invoke(CLI, ["eval", *map(str, args), "--window", "64", "--smoke-tokens", "4",
                                   "--threads", "1", "--max-size-ratio", "off", "--min-speedup", "off",
                                   "--max-ppl-ratio", "off", "--no-smoke", "--json"])
    assert out.exit_code in (0, 3), out.output
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def q4(bigram, long_text, tmp_path_factory):  # noqa: F811
    """A 4-bit copy and its top-1 agreement over the whole text (a gate right at it is a close call)."""
    path = api.quantize(bigram, tmp_path_factory.mktemp("q4") / "q4", scheme="rtn4").path
    whole = _eval(path, "--reference", bigram, "--text", long_text, "--windows", "400")
    assert whole["settings"]["windows"] == whole["settings"]["available_windows"] > 20
    share = whole["artifacts"][0]["top1"]
    assert 0.3 < share < 0.999
    return path, share


def test_sequential_evaluation_stops_early_when_clear_and_spends_more_when_close(
        bigram, long_text, q4, tmp_path):  # noqa: F811
    q4, share = q4
    scrambled = broken_copy(bigram, tmp_path / "scrambled", "scramble")
    doc = _eval(scrambled, q4, "--reference", bigram, "--text", long_text, "--max-tokens", "100000",
                "--min-top1", f"{share:.6f}")
    clear, close = doc["artifacts"]
    first_round = 32 * 63  # max(4 windows, 2048 tokens) of 64-token windows, 63 scored each
    assert clear["verdict"] == "fail" and clear["stopped"] == "decided"
    assert clear["scored_tokens"] == first_round and clear["intervals"]["top1"]["hi"] < share
    assert close["scored_tokens"] > 2 * first_round  # it went on, round after round
    assert close["verdict"] == "undecided" and close["stopped"] == "the text ended"
    gate = next(g for g in close["gates"] if g["gate"] == "min_top1")
    assert gate["interval"]["lo"] < share < gate["interval"]["hi"] and gate["passed"] is None
    assert doc["verdict"] == "fail" and doc["settings"]["rounds"] >= 3  # a failure outranks undecided
    # the same windows in the same order every time: the figures repeat exactly
    again = _eval(scrambled, "--reference", bigram, "--text", long_text)
    assert again["artifacts"][0]["top1"] == clear["top1"]


def test_a_budget_stops_the_rounds(bigram, long_text, q4):  # noqa: F811
    q4, share = q4
    doc = _eval(q4, "--reference", bigram, "--text", long_text, "--max-tokens", "4096",
                "--min-top1", f"{share:.6f}")
    row = doc["artifacts"][0]
    assert row["verdict"] == "undecided" and row["stopped"].startswith("the token budget ran out")
    assert row["scored_tokens"] <= 4096 and doc["settings"]["windows"] == 4096 // 64
