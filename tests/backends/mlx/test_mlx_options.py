"""Typed ``-O KEY=VALUE`` options through the real CLI: one error line naming the
backend, the operation and the key; the shared dtype aliases."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from edgesmith.cli import main


def cli(*args) -> tuple[int, list[str]]:
    """Exit code and the ``edgesmith: error:`` lines of one CLI call."""
    res = CliRunner().invoke(main, [str(a) for a in args])
    return res.exit_code, [line for line in res.stderr.splitlines() if line.startswith("edgesmith: error:")]


def refused(args: list, *words: str) -> None:
    code, errors = cli(*args)
    assert code == 2 and len(errors) == 1, (code, errors)
    for word in words:
        assert word in errors[0], errors[0]


@pytest.mark.parametrize("alias", ["f16", "fp16"])
def test_convert_dtype_aliases(alias, tiny_model, tmp_path):
    out = tmp_path / alias
    code, errors = cli("convert", tiny_model("llama"), "--to", "mlx", "--dtype", alias, "-o", out, "-b", "mlx")
    assert code == 0, errors
    assert json.loads((out / "config.json").read_text())["torch_dtype"] == "float16"
    assert "--dtype float16" in json.loads((out / "edgesmith.json").read_text())["details"]["native_command"]


def test_convert_options(tiny_model, tmp_path):
    base = ["convert", tiny_model("llama"), "--to", "mlx", "-o", tmp_path / "out", "-b", "mlx"]
    refused([*base, "-O", "colour=blue"], "mlx convert", "'colour'", "known options: dtype")
    refused([*base, "--dtype", "int3"], "mlx convert", "dtype=int3", "f16, bf16, f32")
    assert not (tmp_path / "out").exists()


def test_quantize_options(mlx_f16, tmp_path):
    calib = tmp_path / "calib.txt"
    calib.write_text("The river rose slowly through the night. " * 20)
    base = ["quantize", mlx_f16("llama"), "--bits", "4", "-o", tmp_path / "out", "-b", "mlx"]
    gptq = [*base, "--method", "gptq", "--calibration", calib]
    refused([*base, "-O", "colour=blue"], "mlx quantize", "'colour'", "calibration_samples")
    refused([*gptq, "-O", "calibration_samples=0"], "mlx quantize", "calibration_samples=0", "1 to 4096")
    refused([*gptq, "-O", "calibration_length=8"], "mlx quantize", "calibration_length=8", "16 to 32768")
    refused([*gptq, "-O", "calibration_samples=lots"], "mlx quantize", "calibration_samples=lots")
    refused([*base, "-O", "indivisible=maybe"], "mlx quantize", "indivisible=maybe", "error, skip")
    refused([*base, "-O", "mode=fp3"], "mlx quantize", "mode=fp3", "affine")
    refused([*base, "-O", "dtype=fp8"], "mlx quantize", "dtype=fp8")
    assert not (tmp_path / "out").exists()


def test_quantize_dtype_alias(mlx_f16, tmp_path):
    out = tmp_path / "q"
    code, errors = cli("quantize", mlx_f16("llama"), "--bits", "4", "-O", "dtype=bf16", "-O", "INDIVISIBLE=Skip",
                       "-o", out, "-b", "mlx")
    assert code == 0, errors
    assert json.loads((out / "config.json").read_text())["torch_dtype"] == "bfloat16"


def test_run_options(mlx_q4):
    base = ["run", mlx_q4("llama"), "-p", "Hello", "-n", "2", "-b", "mlx"]
    refused([*base, "-O", "colour=blue"], "mlx run", "'colour'", "prefill_step")
    refused([*base, "-O", "prefill_step=0"], "mlx run", "prefill_step=0", "1 to 65536")
    refused([*base, "-O", "prefill_step=many"], "mlx run", "prefill_step=many")
    refused([*base, "-O", "device=tpu"], "mlx run", "device=tpu", "cpu, gpu")
    refused([*base, "-O", "dtype=int8"], "mlx run", "dtype=int8", "auto")
    code, errors = cli(*base, "-O", "dtype=fp16", "-O", "prefill_step=16", "--json")
    assert code == 0, errors
