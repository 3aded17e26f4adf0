"""A language model on the HTP, each step one edgesmith command (issue #19): the test
kit's tiny Qwen2.5 goes HF -> static prefill/decode graphs -> a16w8 QDQ -> context
binaries (qnn, HTP simulator), then `run`, `bench`, `eval` against the checkpoint
(through the transformers backend) and `serve` treat it as any text artifact.
Runs from the core-only environment with the qnn backend in its own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgesmith import api
from edgesmith.testing.archs import arch_checkpoint

from .test_encoders import ok


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    usable = {r.name for r in api.backends() if r.usable}
    if "qnn" not in usable:
        pytest.skip("needs the qnn backend usable here")
    tmp = tmp_path_factory.mktemp("qnn-llm")
    arts = {"hf": arch_checkpoint(tmp / "qwen", "qwen2.5")}
    for key, args in (("float", ("convert", "{hf}", "--to", "qnn", "-O", "context=192", "-O", "chunk=32")),
                      ("qdq", ("quantize", "{float}", "--scheme", "a16w8", "--backend", "qnn")),
                      ("ctx", ("compile", "{qdq}", "--device", "npu", "--backend", "qnn"))):
        arts[key] = tmp / key
        ok(*(a.format(**{k: str(v) for k, v in arts.items()}) for a in args), "-o", str(arts[key]))
    return arts


def test_run_streams_text_generated_on_the_htp(built):
    r = ok("run", str(built["ctx"]), "-p", "The library was", "--max-tokens", "16", "--json")
    doc = json.loads(r.stdout)
    assert doc["backend"] == "qnn" and doc["generated_tokens"] > 0
    assert doc["timings"]["decode_tps"] > 0 and doc["timings"]["ttft_s"] > 0


def test_bench_and_eval_take_it_as_a_text_artifact(built):
    b = json.loads(ok("bench", str(built["ctx"]), "--prompt-tokens", "64", "--gen-tokens", "16",
                      "--repeat", "2", "--warmup", "0", "--json").stdout)
    row = b["artifacts"][0]
    assert row["status"] == "ok" and row["decode_tps"]["n"] == 2 and row["decode_tps"]["mean"] > 0
    e = json.loads(ok("eval", str(built["ctx"]), "--reference", str(built["hf"]), "--window", "128",
                      "--windows", "4", "--no-smoke", "--max-size-ratio", "off", "--max-ppl-ratio", "off",
                      "--min-top1", "off", "--json").stdout)
    row = e["artifacts"][0]
    # a16w8 against transformers' float32 (measured: top-1 0.896, KL 0.091 ± 0.031), interval in the document.
    assert row["top1"] > 0.8 and row["intervals"]["kl"]["hi"] < 0.25, row
    assert e["reference"]["backend"]["name"] == "transformers"
