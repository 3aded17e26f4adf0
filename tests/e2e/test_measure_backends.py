"""Measuring across the real stacks (the "done when" of the measuring issue):
one tiny checkpoint quantized by every installed backend, benchmarked and
evaluated in one command each, one table, one JSON, one HTML report that
renders in headless Chromium. (llama.cpp's own decode timing against
edgesmith's is in tests/backends/llamacpp, where its vendor stack is.)"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from edgesmith import api
from edgesmith.cli import _Group
from edgesmith.formats import detect
from edgesmith.measure.cli import bench, eval_
from edgesmith.testing import bigram_checkpoint

CLI = _Group(commands={"bench": bench, "eval": eval_})

# How each stack makes its 4-bit artifact: (format, native scheme or None for --bits 4).
FOUR_BIT = {"llamacpp": ("gguf", "Q4_K_M"), "openvino": ("openvino", "int4_asym"),
            "mlx": ("mlx", None), "olive": ("onnx", "int4")}


def _usable() -> dict[str, Any]:
    return {r.name: r for r in api.backends() if r.usable and r.name in FOUR_BIT}


def _four_bit(rec: Any, source: Path, out: Path) -> Path:
    fmt, scheme = FOUR_BIT[rec.name]
    kw = {"scheme": scheme} if scheme else {"bits": 4}
    # Convert first, then quantize: the one route every stack here offers.
    base = api.convert(source, fmt, out / "converted", backend=rec.name)
    return Path(api.quantize(base.path, out / "q4", backend=rec.name, **kw).path)


@pytest.fixture(scope="module")
def quantized(tiny_model, tmp_path_factory) -> dict[str, Any]:
    usable = _usable()
    if len(usable) < 2:
        pytest.skip(f"needs two or more of {', '.join(FOUR_BIT)} installed (found: {', '.join(usable) or 'none'})")
    tmp = tmp_path_factory.mktemp("measure-e2e")
    # intermediate_size differs from the vocabulary size for the ONNX Runtime GenAI builder.
    source = bigram_checkpoint(tiny_model("llama", intermediate_size=768), tmp / "source")
    arts = {name: _four_bit(rec, source, tmp / name) for name, rec in usable.items()}
    runs_hf = [r for r in api.backends() if r.usable and "hf" in r.info.runs]
    reference = source if runs_hf else detect(next(iter(arts.values()))).path
    return {"arts": arts, "reference": reference, "tmp": tmp}


def test_one_bench_and_one_eval_over_every_stack(quantized):
    arts, tmp = quantized["arts"], quantized["tmp"]
    paths = [str(p) for p in arts.values()]
    b = CliRunner().invoke(CLI, ["bench", *paths, "--prompt-tokens", "32", "--gen-tokens", "16",
                                 "--repeat", "2", "--threads", "2", "--json"])
    assert b.exit_code == 0, b.output
    bench_doc = json.loads(b.stdout)
    assert [r["status"] for r in bench_doc["artifacts"]] == ["ok"] * len(arts), b.stdout
    for row in bench_doc["artifacts"]:
        assert row["prompt_tokens"] == 32 and row["decode_tps"]["median"] > 0
        assert row["roofline_fraction"] > 0
    (tmp / "bench.json").write_text(b.stdout)
    report = tmp / "report" / "measure.html"
    e = CliRunner().invoke(CLI, ["eval", *paths, "--reference", str(quantized["reference"]),
                                 "--window", "64", "--windows", "2", "--smoke-tokens", "8",
                                 "--min-speedup", "off", "--json", "--speed", str(tmp / "bench.json"),
                                 "--report", str(report), "--certify", str(tmp / "record.json")])
    assert e.exit_code in (0, 3), e.output  # gates may fail on a random tiny model; nothing may crash
    eval_doc = json.loads(e.stdout)
    for row in eval_doc["artifacts"]:
        assert row["status"] == "ok", row
        assert row["ppl_ratio"] > 0 and 0 <= row["top1"] <= 1 and row["kl"] >= 0
    page = report.read_text()
    assert page.count("data:image/png;base64,") >= 3
    chromium = shutil.which("chromium")
    if chromium:
        dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                              "--disable-background-networking", "--disable-component-update",
                              "--no-first-run", f"--user-data-dir={tmp / 'profile'}",
                              "--virtual-time-budget=5000", "--dump-dom", report.resolve().as_uri()], capture_output=True, text=True, timeout=120)
        loaded, total = map(int, dom.stdout.split('data-charts="', 1)[1].split('"', 1)[0].split("/"))
        assert total >= 3 and loaded == total
