"""Typed ``-O KEY=VALUE`` options through the real CLI: one error line naming the
backend, the operation and the key; the shared dtype aliases; the declared
operations, and that declaring them stays light."""

from __future__ import annotations

import json
import subprocess
import sys

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
    refused([*base, "-O", "colour=blue"], "mlx convert hf->mlx has no option", "'colour'", "known options: dtype")
    refused([*base, "--dtype", "int3"], "mlx convert hf->mlx: option", "dtype=int3", "f16, bf16, f32")
    assert not (tmp_path / "out").exists()


def test_quantize_options(mlx_f16, tmp_path):
    calib = tmp_path / "calib.txt"
    calib.write_text("The river rose slowly through the night. " * 20)
    base = ["quantize", mlx_f16("llama"), "--bits", "4", "-o", tmp_path / "out", "-b", "mlx"]
    gptq = [*base, "--method", "gptq", "--calibration", calib]
    refused([*base, "-O", "colour=blue"], "mlx quantize mlx has no option", "'colour'", "calibration_samples")
    refused([*gptq, "-O", "calibration_samples=0"], "mlx quantize mlx: option", "calibration_samples=0", "1 to 4096")
    refused([*gptq, "-O", "calibration_length=8"], "mlx quantize mlx: option", "calibration_length=8", "16 to 32768")
    refused([*gptq, "-O", "calibration_samples=lots"], "mlx quantize mlx: option", "calibration_samples=lots")
    refused([*base, "-O", "indivisible=maybe"], "mlx quantize mlx: option", "indivisible=maybe", "error, skip")
    refused([*base, "-O", "mode=fp3"], "mlx quantize mlx: option", "mode=fp3", "affine")
    refused([*base, "-O", "dtype=fp8"], "mlx quantize mlx: option", "dtype=fp8")
    assert not (tmp_path / "out").exists()


def test_quantize_dtype_alias(mlx_f16, tmp_path):
    out = tmp_path / "q"
    code, errors = cli("quantize", mlx_f16("llama"), "--bits", "4", "-O", "dtype=bf16", "-O", "INDIVISIBLE=Skip",
                       "-o", out, "-b", "mlx")
    assert code == 0, errors
    assert json.loads((out / "config.json").read_text())["torch_dtype"] == "bfloat16"


def test_run_options(mlx_q4):
    base = ["run", mlx_q4("llama"), "-p", "Hello", "-n", "2", "-b", "mlx"]
    refused([*base, "-O", "colour=blue"], "mlx load mlx has no option", "'colour'", "prefill_step")
    refused([*base, "-O", "prefill_step=0"], "mlx load mlx: option", "prefill_step=0", "1 to 65536")
    refused([*base, "-O", "prefill_step=many"], "mlx load mlx: option", "prefill_step=many")
    refused([*base, "-O", "device=tpu"], "mlx load mlx: option", "device=tpu", "cpu, gpu")
    refused([*base, "-O", "dtype=int8"], "mlx load mlx: option", "dtype=int8", "auto")
    code, errors = cli(*base, "-O", "dtype=fp16", "-O", "prefill_step=16", "--json")
    assert code == 0, errors


def test_declared_operations():
    """Each operation names its handler and its options."""
    from edgesmith_mlx.plugin import edgesmith_backend

    ops = {op["label"]: op for op in edgesmith_backend().to_dict()["operations"]}
    assert list(ops) == ["convert hf->mlx", "convert mlx", "quantize hf->mlx", "quantize mlx", "load mlx"]
    names = {label: [o["name"] for o in op["options"]] for label, op in ops.items()}
    assert names["convert hf->mlx"] == names["convert mlx"] == ["dtype"]
    assert names["quantize mlx"] == names["quantize hf->mlx"] == [
        "mode", "recipe", "dtype", "indivisible", "calibration_samples", "calibration_length"]
    assert names["load mlx"] == ["device", "prefill_step", "dtype"]
    assert ops["quantize mlx"]["handler"] == "edgesmith_mlx.quantize:quantize"
    assert "mxfp4" in ops["quantize hf->mlx"]["schemes"] and not ops["quantize mlx"]["activations"]
    assert ops["load mlx"]["handler"] == "edgesmith_mlx.runner:load" and "cpu" in ops["load mlx"]["devices"]


def test_declaring_the_backend_is_light():
    """Importing the plugin, describing the backend and its contributions (optimize target,
    doctor rule) loads no vendor stack, not even numpy."""
    heavy = ("numpy", "mlx", "mlx_lm", "transformers", "torch", "safetensors")
    code = ("import sys, json, edgesmith_mlx.plugin as p; p.edgesmith_backend(); "
            "p.edgesmith_optimize_targets(); p.edgesmith_doctor_rules(); "
            f"print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
