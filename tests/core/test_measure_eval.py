"""`edgesmith eval`: same tokens for all, honest figures, smoke test, gates,
validation record, and an HTML report that renders in a real browser."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from click.testing import CliRunner

from edgesmith import api
from edgesmith.util import content_hash

from .test_measure_support import CLI, bigram, broken_copy, short_text  # noqa: F401 - fixtures

FAST = ["--window", "48", "--windows", "2", "--smoke-tokens", "6", "--threads", "1"]


@pytest.fixture(scope="module")
def evaluated(bigram, short_text, tmp_path_factory):  # noqa: F811
    """One eval of: an identical copy, an 8-bit RTN copy, a zeroed and a scrambled one."""
    tmp = tmp_path_factory.mktemp("eval")
    same = tmp / "same"
    shutil.copytree(bigram, same)
    q8 = api.quantize(bigram, tmp / "q8", scheme="rtn8").path
    zero = broken_copy(bigram, tmp / "zeroed", "zero")
    scrambled = broken_copy(bigram, tmp / "scrambled", "scramble")
    report, record = tmp / "out" / "eval.html", tmp / "record.json"
    out = CliRunner().invoke(CLI, ["eval", str(same), str(q8), str(zero), str(scrambled),
                                   "--reference", str(bigram), "--text", str(short_text), *FAST,
                                   "--max-size-ratio", "off", "--min-speedup", "off", "--json",
                                   "--certify", str(record), "--report", str(report)])
    return {"out": out, "doc": json.loads(out.stdout), "report": report, "record": record,
            "paths": [same, q8, zero, scrambled]}


def test_identical_artifact_matches_the_reference_exactly(evaluated):
    doc = evaluated["doc"]
    same = doc["artifacts"][0]
    assert same["status"] == "ok" and same["verdict"] == "pass"
    assert same["ppl_ratio"] == pytest.approx(1.0, abs=1e-9)
    assert same["kl"] == pytest.approx(0.0, abs=1e-9) and same["top1"] == 1.0
    assert same["smoke"]["passed"] and doc["reference"]["smoke"]["passed"]
    assert same["scored_tokens"] == doc["settings"]["scored_tokens"] == 2 * 47
    assert doc["settings"]["window"] == 48 and doc["settings"]["windows"] == 2
    for key in ("perplexity", "ppl_ratio", "kl", "top1", "smoke"):
        assert key in doc["definitions"]


def test_light_quantization_passes_and_broken_weights_fail(evaluated):
    out, doc = evaluated["out"], evaluated["doc"]
    _, q8, zero, scrambled = doc["artifacts"]
    assert q8["verdict"] == "pass" and 0 < q8["kl"] < 0.01 and q8["top1"] > 0.95
    for broken in (zero, scrambled):
        assert broken["verdict"] == "fail" and not broken["smoke"]["passed"]
        failed = {g["gate"] for g in broken["gates"] if g["passed"] is False}
        assert {"smoke", "min_top1"} <= failed, failed
    assert out.exit_code == 3 and doc["verdict"] == "fail"
    assert "zeroed: gate smoke failed: garbled output" in out.stderr
    assert "scrambled: gate min_top1 failed: top1" in out.stderr and "under the limit 0.9" in out.stderr


def test_validation_record(evaluated):
    record = json.loads(evaluated["record"].read_text())
    assert record["schema"] == "edgesmith.certificate/1" and record["verdict"] == "fail"
    assert record["environment"]["edgesmith"] and record["issued"]
    for entry, path in zip(record["artifacts"], evaluated["paths"], strict=True):
        assert entry["content_hash"] == content_hash(path)
        assert {"ppl_ratio", "kl", "top1", "gates", "verdict", "smoke"} <= set(entry)
    assert record["artifacts"][0]["backend"]["libraries"]["numpy"]
    assert record["gates"]["max_size_ratio"] is None and record["gates"]["min_top1"] == 0.9


def test_report_is_self_contained_with_png_charts(evaluated):
    page = evaluated["report"].read_text()
    assert "http://" not in page and "https://" not in page
    assert page.count("data:image/png;base64,") >= 2
    assert (evaluated["report"].parent / "eval-size-quality.png").stat().st_size > 1000


def test_report_renders_in_headless_chromium(evaluated, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if not chromium:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}"]
    url = evaluated["report"].resolve().as_uri()
    shot = tmp_path / "shot.png"
    r = subprocess.run([*flags, "--window-size=1200,1600", f"--screenshot={shot}", url],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert shot.stat().st_size > 10_000
    dom = subprocess.run([*flags, "--virtual-time-budget=5000", "--dump-dom", url],
                         capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    # The page's own script counts the chart images that decoded.
    charts = dom.stdout.split('data-charts="', 1)[1].split('"', 1)[0]
    loaded, total = map(int, charts.split("/"))
    assert total >= 2 and loaded == total, charts


def test_tokenizer_mismatch_is_reported_clearly(bigram, short_text, tiny_model):  # noqa: F811
    other = tiny_model("llama", vocab_size=448)
    out = CliRunner().invoke(CLI, ["eval", str(other), str(bigram), "--reference", str(bigram), "--text",
                                   str(short_text), *FAST, "--json"])
    assert out.exit_code == 4
    row, after = json.loads(out.stdout)["artifacts"]
    assert row["status"] == "error" and "tokenizer disagrees with the reference" in row["error"]
    assert after["status"] == "ok" and after["top1"] == 1.0  # the failure costs only its own row


def test_eval_usage_errors(bigram, tmp_path):  # noqa: F811
    bad = CliRunner().invoke(CLI, ["eval", str(bigram), "--reference", str(bigram), "--text",
                                   str(tmp_path / "missing.txt")])
    assert bad.exit_code == 2 and "evaluation text" in bad.stderr
    bad = CliRunner().invoke(CLI, ["eval", str(bigram), "--reference", str(bigram),
                                   "--min-top1", "lots"])
    assert bad.exit_code == 2 and "not a number or 'off'" in bad.output
