"""Encoders as first-class models, each step one edgesmith command (issue #19): a tiny
BERT sentence encoder (WordPiece, safetensors, sentence-transformers pooling) goes
HF -> ONNX (olive) -> QDQ a16w8 -> context binary (qnn, HTP simulator) -> run,
bench and eval against the fp32 export and the checkpoint itself; and HF ->
OpenVINO IR (feature extraction). Runs from the core-only environment with the
backends in their own environments (or all in one)."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from edgesmith import api
from edgesmith.cli import main

ALICE = str(resources.files("edgesmith").joinpath("data/alice_in_wonderland.txt"))
SENTENCE = "Alice was beginning to get very tired of sitting by her sister on the bank."


def _usable() -> dict[str, Any]:
    return {r.name: r for r in api.backends() if r.usable}


def _python_with_torch(recs: dict[str, Any]) -> str:
    env = recs["olive"].environment  # the olive stack has torch and transformers
    return str(env.python) if env is not None else sys.executable


def _tiny_bert(recs: dict[str, Any], path: Path, seed: int = 0) -> Path:
    subprocess.run([_python_with_torch(recs), "-m", "edgesmith.testing.tinybert", str(path), str(seed)],
                   check=True, capture_output=True, cwd=path.parent)
    return path


def cli(*args: str) -> Any:
    return CliRunner().invoke(main, list(args))


def ok(*args: str) -> Any:
    r = cli(*args)
    assert r.exit_code == 0, r.output
    return r


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    recs = _usable()
    missing = [n for n in ("olive", "qnn") if n not in recs]
    if missing:
        pytest.skip(f"needs the {' and '.join(missing)} backend(s) usable here")
    tmp = tmp_path_factory.mktemp("encoders")
    arts = {"hf": _tiny_bert(recs, tmp / "bert")}
    arts["onnx"] = tmp / "bert-onnx"
    ok("convert", str(arts["hf"]), "--to", "onnx", "-o", str(arts["onnx"]), "-O", "seq_len=64")
    arts["qdq"] = tmp / "bert-a16w8"
    ok("quantize", str(arts["onnx"]), "--backend", "qnn", "--scheme", "a16w8", "--calibration", ALICE,
       "-O", "samples=32", "-o", str(arts["qdq"]))
    arts["ctx"] = tmp / "bert-htp"
    ok("compile", str(arts["qdq"]), "--device", "npu", "-o", str(arts["ctx"]))
    return arts


def test_the_export_is_fixed_shape_with_tokenizer_and_pooling(built):
    import onnx

    g = onnx.load(str(built["onnx"] / "model.onnx")).graph
    dims = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in g.input}
    assert dims == {"input_ids": [1, 64], "attention_mask": [1, 64]}
    assert [o.name for o in g.output] == ["last_hidden_state", "pooler_output"]
    manifest = json.loads((built["onnx"] / "edgesmith.json").read_text())
    assert manifest["backend"]["name"] == "olive" and "torch.onnx" in manifest["details"]["exporter"]
    assert manifest["details"]["max_abs_diff_vs_transformers"] < 1e-4
    for art in ("onnx", "qdq", "ctx"):  # the pooling configuration travels down the route
        assert (built[art] / "1_Pooling" / "config.json").is_file() and (built[art] / "tokenizer.json").is_file()
    assert any(built["ctx"].glob("*.bin"))  # the QNN context binary


def _embedding(path: Path, *extra: str) -> np.ndarray:
    r = ok("run", str(path), "-p", SENTENCE, "--json", *extra)
    doc = json.loads(r.stdout)
    assert doc["extra"]["pooling"] == "mean" and doc["extra"]["normalized"] is True
    return np.asarray(doc["extra"]["embedding"])


def test_run_prints_the_same_embedding_on_every_runtime(built):
    ref = _embedding(built["onnx"])
    assert ref.shape == (64,) and abs(np.linalg.norm(ref) - 1) < 1e-5  # Normalize module listed
    for art in ("qdq", "ctx"):
        vec = _embedding(built[art], "--backend", "qnn")
        assert float(vec @ ref) > 0.999, art
    shown = ok("run", str(built["ctx"]), "-p", SENTENCE).output
    assert "embedding: 64 dimensions, mean pooling, L2-normalized" in shown


def test_a_long_text_is_cut_with_a_note_or_refused(built):
    long_text = "the queen said off with her head " * 40
    r = ok("run", str(built["onnx"]), "-p", long_text)
    assert "cut to 64 tokens" in r.output
    r = cli("run", str(built["onnx"]), "-p", long_text, "-O", "truncate=false")
    assert r.exit_code != 0 and "edgesmith: error:" in r.output and "truncate=false" in r.output
    assert len([line for line in r.output.splitlines() if line.startswith("edgesmith: error:")]) == 1


def test_bench_times_one_inference_at_the_fixed_shape(built):
    r = ok("bench", str(built["onnx"]), str(built["ctx"]), "--threads", "2", "--json")
    doc = json.loads(r.stdout)
    assert doc["schema"] == "edgesmith.encoder-bench/1"
    for row in doc["artifacts"]:
        assert row["status"] == "ok", row
        lat = row["latency_ms"]
        assert 0 < lat["p50"] <= lat["p90"] and lat["n"] >= 30 and lat["sd"] is not None
        assert row["seq_len"] == 64 and row["peak_rss_mb"] > 0
    assert [r["format"] for r in doc["artifacts"]] == ["onnx", "qnn"]


def test_eval_passes_the_quantized_encoder_against_fp32_and_the_checkpoint(built):
    r = ok("eval", str(built["qdq"]), str(built["ctx"]), "--reference", str(built["onnx"]),
           "--windows", "32", "--json")
    doc = json.loads(r.stdout)
    assert doc["verdict"] == "pass" and doc["settings"]["sentences"] == 32
    for row in doc["artifacts"]:
        iv = row["intervals"]["cosine_mean"]
        assert row["cosine_mean"] >= 0.99 and row["cosine_worst"] >= 0.98
        assert iv["lo"] <= row["cosine_mean"] <= iv["hi"] and row["gates"][0]["state"] == "pass"
    r = ok("eval", str(built["onnx"]), "--reference", str(built["hf"]), "--windows", "16", "--json")
    assert json.loads(r.stdout)["artifacts"][0]["cosine_mean"] > 0.9999  # the export is transformers'


def test_eval_fails_an_encoder_of_another_model(built):
    other = _tiny_bert(_usable(), built["hf"].parent / "other-bert", seed=1)
    onnx_other = built["hf"].parent / "other-onnx"
    ok("convert", str(other), "--to", "onnx", "-o", str(onnx_other), "-O", "seq_len=64")
    r = cli("eval", str(onnx_other), "--reference", str(built["onnx"]), "--windows", "16", "--json")
    assert r.exit_code == 3, r.output
    row = json.loads(r.stdout)["artifacts"][0]
    assert row["verdict"] == "fail" and row["cosine_mean"] < 0.9


def test_a_causal_lm_is_not_taken_by_the_encoder_export(built, tiny_model):
    llama = tiny_model("llama")
    r = cli("convert", str(llama), "--to", "onnx", "-o", str(built["hf"].parent / "llama-onnx"),
            "-O", "seq_len=64")
    assert r.exit_code != 0 and "edgesmith: error:" in r.output and "seq_len" in r.output


def test_openvino_exports_encoders_for_feature_extraction(built):
    if "openvino" not in _usable():
        pytest.skip("needs the openvino backend usable here")
    ir = built["hf"].parent / "bert-ov"
    ok("convert", str(built["hf"]), "--to", "openvino", "-o", str(ir), "-O", "seq_len=64")
    manifest = json.loads((ir / "edgesmith.json").read_text())
    assert manifest["details"]["task"] == "feature-extraction"
    assert manifest["details"]["inputs"]["input_ids"] == "[1,64]"
    assert float(_embedding(ir) @ _embedding(built["onnx"])) > 0.9999
    r = ok("eval", str(ir), "--reference", str(built["onnx"]), "--windows", "16", "--json")
    assert json.loads(r.stdout)["verdict"] == "pass"
