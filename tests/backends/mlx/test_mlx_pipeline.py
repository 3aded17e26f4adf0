"""Convert -> 4-bit group 64 -> run, for every tiny architecture, through the
API and the CLI; the outputs must also work with mlx-lm alone."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgesmith import api
from edgesmith.cli import main as cli
from edgesmith.formats import detect
from edgesmith.manifest import MANIFEST_NAME
from edgesmith.testing.fixtures import env_offline

ARCHS = ("llama", "qwen2", "phi3")


@pytest.mark.parametrize("arch", ARCHS)
def test_api_pipeline_and_mlx_lm_load(arch, mlx_f16, mlx_q4):
    f16, q4 = mlx_f16(arch), mlx_q4(arch)
    for path, op in ((f16, "convert"), (q4, "quantize")):
        manifest = json.loads((path / MANIFEST_NAME).read_text())
        assert manifest["format"] == "mlx" and manifest["operation"]["name"] == op
        assert detect(path).format == "mlx"
    details = json.loads((q4 / MANIFEST_NAME).read_text())["details"]
    assert details["bits"] == 4 and details["group_size"] == 64 and details["mode"] == "affine"
    assert 4.0 < details["bits_per_weight"] < 5.0

    result = api.run(q4, "The morning train", max_tokens=6, backend="mlx")
    assert 1 <= result.generated_tokens <= 6 and result.timings.ttft_s > 0
    assert result.extra["mlx_peak_memory_mb"] > 0 and result.extra["mlx_device"] == "cpu"
    assert result.extra["mlx_compute_dtype"] == "float32"  # widened for MLX's CPU kernels

    # The directory is a plain MLX model: mlx-lm loads it without edgesmith.
    import mlx.core as mx
    import mlx.nn as nn
    from mlx_lm import load
    from mlx_lm.utils import compute_bits_per_weight

    model, tokenizer = load(str(q4))
    linears = [m for _, m in model.named_modules() if isinstance(m, nn.QuantizedLinear)]
    assert linears and all(m.bits == 4 and m.group_size == 64 for m in linears)
    assert round(compute_bits_per_weight(model), 4) == details["bits_per_weight"]
    logits = model(mx.array(tokenizer.encode("hello world"))[None])
    assert logits.shape[-1] == model.args.vocab_size


def test_python_m_mlx_lm_generate(mlx_q4):
    """`python -m mlx_lm generate` runs each quantized output, offline.

    The three runs go in parallel: most of their time is importing transformers."""
    procs = {
        arch: subprocess.Popen(
            [sys.executable, "-m", "mlx_lm", "generate", "--model", str(mlx_q4(arch)),
             "--prompt", "Rain", "--max-tokens", "2", "--temp", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env_offline(),
        )
        for arch in ARCHS
    }
    for arch, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"{arch}: {err[-2000:]}"
        assert "Generation:" in out and "tokens-per-sec" in out, arch


def test_cli_pipeline(tiny_model, tmp_path):
    """convert -> quantize -> run from the command line, JSON out, for each architecture."""
    runner = CliRunner()
    for arch in ARCHS:
        src, f16, q4 = tiny_model(arch), tmp_path / f"{arch}-f16", tmp_path / f"{arch}-q4"
        r = runner.invoke(cli, ["convert", str(src), "--to", "mlx", "-o", str(f16), "-b", "mlx",
                                "-O", "dtype=float16", "--json"])
        assert r.exit_code == 0, r.output
        r = runner.invoke(cli, ["quantize", str(f16), "-o", str(q4), "--bits", "4",
                                "--group-size", "64", "-b", "mlx", "--json"])
        assert r.exit_code == 0, r.output
        r = runner.invoke(cli, ["run", str(q4), "-p", "Hello", "-n", "4", "-b", "mlx", "--json"])
        assert r.exit_code == 0, r.output
        payload = json.loads(r.stdout[r.stdout.index("{"):])
        assert payload["backend"] == "mlx" and 1 <= payload["generated_tokens"] <= 4
        assert payload["extra"]["mlx_peak_memory_mb"] > 0


def test_cli_errors_are_one_line_and_leave_nothing(mlx_q4, tmp_path):
    runner = CliRunner()
    out = tmp_path / "again"
    r = runner.invoke(cli, ["quantize", str(mlx_q4("llama")), "-o", str(out), "--bits", "4", "-b", "mlx"])
    assert r.exit_code == 2
    lines = [line for line in r.stderr.splitlines() if "error" in line]
    assert len(lines) == 1 and "dequantize first" in lines[0]
    assert not out.exists() and not list(tmp_path.glob(".again*"))


def test_hf_to_quantized_in_one_step(tiny_model, tmp_path):
    """hf -> mlx quantize directly, as `mlx_lm.convert -q` does."""
    art = api.quantize(tiny_model("qwen2"), tmp_path / "q", bits=4, group_size=64, backend="mlx",
                       options={"dtype": "float16"})
    assert art.format == "mlx" and json.loads((art.path / "config.json").read_text())["quantization"]
    assert Path(art.path / "model.safetensors").is_file()
