"""Typed -O options of the OpenVINO backend: bad keys and values stop at once, in one line;
the shared dtype names work; a missing tokenizer is named."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edgesmith import api
from edgesmith.errors import UserError
from edgesmith.testing.cli import error_line
from edgesmith.types import RunRequest


def test_unknown_run_key(ov_int4) -> None:
    line = error_line("run", ov_int4("llama"), "-p", "hi", "-O", "colour=blue", "-b", "openvino")
    assert "openvino load openvino has no option 'colour'; known options: device" in line


def test_bad_bool(ov_int4, tmp_path: Path) -> None:
    out = tmp_path / "c"
    line = error_line("compile", ov_int4("llama"), "--device", "cpu", "-o", out, "-O", "genai_cache=maybe",
                      "-b", "openvino")
    assert "openvino compile openvino: option genai_cache=maybe is not valid; give true or false" in line
    assert not out.exists()


def test_out_of_range_number(ov_fp16, tmp_path: Path) -> None:
    out = tmp_path / "q"
    line = error_line("quantize", ov_fp16("llama"), "-o", out, "--bits", "4", "--group-size", "64",
                      "-O", "subset_size=0", "-b", "openvino")
    assert ("openvino quantize openvino (weights): option subset_size=0 is not valid; give a whole "
            "number from 1 to 100000") in line
    assert not out.exists()


@pytest.mark.parametrize(("key", "value", "accepted"), [
    ("num_streams", "-1", "a whole number from 1 to 256"),
    ("performance_hint", "fastest", "one of LATENCY, THROUGHPUT, CUMULATIVE_THROUGHPUT"),
    ("inference_precision", "int8", "one of f32, bf16, f16"),
])
def test_compile_values_are_checked(ov_int4, tmp_path: Path, key: str, value: str, accepted: str) -> None:
    with pytest.raises(UserError, match=f"openvino compile openvino: option {key}={value} is not valid; "
                                        f"give {accepted}"):
        api.compile(ov_int4("llama"), "cpu", tmp_path / "c", backend="openvino", options={key: value})


def test_dtype_aliases(ov_int4, tiny_encoder, tmp_path: Path) -> None:
    onnx_path = tiny_encoder(tmp_path / "enc" / "model.onnx")
    art = api.convert(onnx_path.parent, "openvino", tmp_path / "ir", backend="openvino", dtype="float16")
    assert art.details["weights"] == "fp16"
    api.compile(ov_int4("llama"), "cpu", tmp_path / "c", backend="openvino",
                options={"inference_precision": "FP32"})
    info = json.loads((tmp_path / "c" / "openvino_compiled.json").read_text())
    assert info["properties"]["INFERENCE_PRECISION_HINT"] == "f32"


def test_missing_tokenizer_is_named(ov_fp16, tiny_model, tmp_path: Path) -> None:
    no_tok = tmp_path / "no-tok"
    shutil.copytree(ov_fp16("llama"), no_tok, ignore=shutil.ignore_patterns("openvino_*tokenizer.*"))
    with api.load(no_tok, backend="openvino") as runner:
        with pytest.raises(UserError, match="openvino_tokenizer.xml, openvino_detokenizer.xml missing"):
            runner.generate(RunRequest(prompt="hi", max_tokens=2))
    no_detok = tmp_path / "no-detok"
    shutil.copytree(ov_fp16("llama"), no_detok, ignore=shutil.ignore_patterns("openvino_detokenizer.*"))
    with pytest.raises(UserError, match=r"\(openvino_detokenizer.xml missing\).*edgesmith convert"):
        api.load(no_detok, backend="openvino")
    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_model("llama"), ckpt, ignore=shutil.ignore_patterns("tokenizer*"))
    line = error_line("convert", ckpt, "--to", "openvino", "-o", tmp_path / "out", "-b", "openvino")
    assert "tokenizer.json, tokenizer.model, vocab.json" in line
