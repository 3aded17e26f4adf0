"""Typed -O options of the qnn backend: bad keys and values stop before any work, in one line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from qnn_testkit import SHAPE

from edgesmith import api
from edgesmith.errors import UserError
from edgesmith.testing.cli import error_line
from edgesmith_qnn import hub


def test_unknown_key(encoder, tmp_path: Path) -> None:
    out = tmp_path / "q"
    line = error_line("quantize", encoder, "-o", out, "--scheme", "a8w8", "-O", "colour=blue", "-b", "qnn")
    assert "qnn quantize onnx->qnn has no option 'colour'; known options: calibrate_method" in line
    assert not out.exists()


def test_bad_bool(encoder, tmp_path: Path) -> None:
    out = tmp_path / "c"
    line = error_line("compile", encoder, "--device", "npu", "-o", out, "-O", "cpu_fallback=maybe",
                      "-b", "qnn")
    assert "qnn compile onnx->qnn: option cpu_fallback=maybe is not valid; give true or false" in line
    assert not out.exists()


@pytest.mark.parametrize(("op", "key", "value", "accepted"), [
    ("quantize", "samples", "0", "a whole number from 1 to 100000"),
    ("quantize", "mask_value", "100", "a number from -1000000000 to -1"),
    ("compile", "soc_model", "sixty", "a whole number from 1 to 9999"),
    ("compile", "hub_timeout", "0", "a whole number from 1 to 604800"),
])
def test_out_of_range(encoder, tmp_path: Path, op: str, key: str, value: str, accepted: str) -> None:
    out = tmp_path / "x"
    args = ["--scheme", "a8w8"] if op == "quantize" else ["--device", "npu"]
    line = error_line(op, encoder, "-o", out, *args, "-O", f"{key}={value}", "-b", "qnn")
    assert line.endswith(f"qnn {op} onnx->qnn: option {key}={value} is not valid; give {accepted}")
    assert not out.exists()


def test_run_and_profile_options(encoder) -> None:
    with pytest.raises(UserError, match="qnn load onnx: option htp_arch=99 is not valid; give one of 68, 69"):
        api.load(encoder, backend="qnn", options={"htp_arch": "99"})
    with pytest.raises(UserError, match="qnn hub profile has no option 'hub_device'"):
        hub.profile(encoder, "Samsung Galaxy S24", options={"hub_device": "x"})


def test_text_calibration_without_tokenizer_names_it(encoder, calib_text, tmp_path: Path) -> None:
    src = tmp_path / "no-tok"
    shutil.copytree(encoder, src, ignore=shutil.ignore_patterns("tokenizer.json"))
    with pytest.raises(UserError, match="put tokenizer.json beside model.onnx or pass --option tokenizer"):
        api.quantize(src, tmp_path / "q", scheme="a8w8", calibration=calib_text, backend="qnn",
                     options=SHAPE)
    assert not (tmp_path / "q").exists()
