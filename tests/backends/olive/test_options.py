"""Typed ``-O KEY=VALUE`` options through the real CLI: one error line naming the
backend, the operation (quantize: the path taken) and the key; the shared
dtype aliases; clear lines for a checkpoint without tokenizer or with
corrupt weights; the declared operations, and that declaring them stays light."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys

import pytest
from click.testing import CliRunner

from edgesmith.cli import main

pytest.importorskip("olive", reason="edgesmith-olive's stack (olive-ai) is not installed")
pytest.importorskip("onnxruntime_genai", reason="onnxruntime-genai is not installed")


def cli(*args: str) -> tuple[int, list[str]]:
    """Exit code and the ``edgesmith: error:`` lines of one CLI call."""
    res = CliRunner().invoke(main, [str(a) for a in args])
    return res.exit_code, [line for line in res.stderr.splitlines() if line.startswith("edgesmith: error:")]


def refused(args: list, *words: str) -> str:
    code, errors = cli(*args)
    assert code == 2 and len(errors) == 1, (code, errors)
    for word in words:
        assert word in errors[0], errors[0]
    return errors[0]


@pytest.fixture(scope="module")
def f16_bundle(tiny, tmp_path_factory):
    """A GenAI bundle from ``--dtype f16`` (the alias the Olive backend used to refuse)."""
    out = tmp_path_factory.mktemp("f16") / "bundle"
    code, errors = cli("convert", tiny("llama"), "--to", "onnx", "--dtype", "f16", "-o", out, "-b", "olive")
    assert code == 0, errors
    return out


@pytest.mark.parametrize("alias", ["f16", "fp16", "float16"])
def test_dtype_aliases(alias, f16_bundle, tiny, tmp_path):
    if alias == "f16":
        out = f16_bundle
    else:
        out = tmp_path / alias
        code, errors = cli("convert", tiny("llama"), "--to", "onnx", "--dtype", alias, "-o", out, "-b", "olive")
        assert code == 0, errors
    details = json.loads((out / "edgesmith.json").read_text())["details"]
    assert details["dtype"] == "fp16"
    assert details["olive_passes"] == ["ModelBuilder", "OnnxFloatToFloat16"]


def test_convert_options(tiny, tmp_path):
    src, out = tiny("llama"), tmp_path / "out"
    base = ["convert", src, "--to", "onnx", "-o", out, "-b", "olive"]
    refused([*base, "-O", "colour=red"], "olive convert hf->onnx", "'colour'", "known options: accuracy_level")
    refused([*base, "--dtype", "bf16"], "olive convert hf->onnx", "dtype=bf16", "f32, f16, int4")
    refused([*base, "--dtype", "int4", "-O", "block_size=512"], "olive convert hf->onnx", "block_size=512", "16 to 256")
    refused([*base, "--dtype", "int4", "-O", "block_size=48"], "olive convert hf->onnx", "block_size=48", "16, 32, 64")
    refused([*base, "--dtype", "int4", "-O", "accuracy_level=0"], "olive convert hf->onnx", "accuracy_level=0", "1 to 4")
    refused([*base, "-O", "provider=tpu"], "olive convert hf->onnx", "provider=tpu")
    assert not out.exists()


def test_quantize_names_the_path(tiny, f16_bundle, tmp_path):
    calib = tmp_path / "calib.txt"
    calib.write_text("The river rose slowly through the night and the town slept on. " * 4)
    out = tmp_path / "out"
    gptq = ["quantize", tiny("llama"), "--bits", "4", "--method", "gptq", "--calibration", calib, "-o", out,
            "-b", "olive"]
    refused([*gptq, "-O", "seq_len=4"], "olive quantize hf->onnx (gptq)", "seq_len=4", "8 to 32768")
    refused([*gptq, "-O", "samples=0"], "olive quantize hf->onnx (gptq)", "samples=0")
    refused([*gptq, "-O", "per_channel=true"], "olive quantize hf->onnx (gptq)", "'per_channel'")
    bundle = ["quantize", f16_bundle, "--bits", "4", "-o", out, "-b", "olive"]
    refused([*bundle, "-O", "accuracy_level=5"], "olive quantize onnx (bundle)", "accuracy_level=5", "0 to 4")
    refused([*bundle, "-O", "seq_len=64"], "olive quantize onnx (bundle)", "'seq_len'")
    assert not out.exists()


def test_compile_and_run_options(f16_bundle, tmp_path):
    out = tmp_path / "out"
    compile_ = ["compile", f16_bundle, "--device", "cpu", "-o", out, "-b", "olive"]
    refused([*compile_, "-O", "measure=maybe"], "olive compile onnx", "measure=maybe", "true or false")
    refused([*compile_, "-O", "level=max"], "olive compile onnx", "level=max", "basic, extended, all")
    refused(["run", f16_bundle, "-p", "hi", "-b", "olive", "-O", "beam=4"], "olive load onnx", "'beam'")
    refused(["run", f16_bundle, "-p", "hi", "-b", "olive", "-O", "provider=cuda"], "olive load onnx", "provider=cuda")
    assert not out.exists()


def test_missing_tokenizer_and_corrupt_weights(tiny, tmp_path):
    out = tmp_path / "out"
    no_tok = tmp_path / "no-tokenizer"
    shutil.copytree(tiny("llama"), no_tok)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (no_tok / name).unlink(missing_ok=True)
    line = refused(["convert", no_tok, "--to", "onnx", "-o", out, "-b", "olive"], "no tokenizer",
                   "tokenizer.json", "copy the tokenizer files")
    assert "sentencepiece" not in line

    data = (tiny("llama") / "model.safetensors").read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    for name, weights in (("truncated", data[: 8 + n + 100]), ("trailing-garbage", data + b"\x7fjunk" * 64)):
        bad = tmp_path / name
        shutil.copytree(tiny("llama"), bad)
        (bad / "model.safetensors").write_bytes(weights)
        refused(["convert", bad, "--to", "onnx", "-o", out, "-b", "olive"], "model.safetensors",
                "re-download or re-export")
    assert not out.exists()


def test_declared_operations():
    """One operation per path, each with its handler, options and schemes."""
    from edgesmith_olive.plugin import edgesmith_backend

    ops = {op["label"]: op for op in edgesmith_backend().to_dict()["operations"]}
    assert list(ops) == ["convert hf->onnx", "convert hf->onnx (encoder)", "quantize onnx (bundle)", "quantize onnx (static)",
                         "quantize hf->onnx (gptq)", "compile onnx", "load onnx"]
    names = {label: [o["name"] for o in op["options"]] for label, op in ops.items()}
    assert names == {
        "convert hf->onnx": ["dtype", "provider", "block_size", "accuracy_level"],
        "convert hf->onnx (encoder)": ["seq_len"],
        "quantize onnx (bundle)": ["accuracy_level", "provider"],
        "quantize onnx (static)": ["provider", "per_channel", "calibrate_method", "samples", "activation_type"],
        "quantize hf->onnx (gptq)": ["accuracy_level", "provider", "seq_len", "samples"],
        "compile onnx": ["level", "provider", "measure"],
        "load onnx": ["provider", "truncate"],
    }
    assert ops["quantize onnx (static)"]["activations"] and ops["quantize onnx (static)"]["schemes"] == []
    assert not ops["quantize onnx (bundle)"]["activations"]
    assert "int4_hqq" in ops["quantize onnx (bundle)"]["schemes"]
    assert "int4_gptq" not in ops["quantize onnx (bundle)"]["schemes"]
    assert ops["quantize hf->onnx (gptq)"]["schemes"] == ["int4_gptq"]
    assert {op["handler"] for op in ops.values()} == {
        "edgesmith_olive.convert:convert", "edgesmith_olive.encoder:export", "edgesmith_olive.quantize:quantize", "edgesmith_olive.static:quantize",
        "edgesmith_olive.gptq:quantize", "edgesmith_olive.compile:compile_bundle", "edgesmith_olive.runner:load"}


def test_declaring_the_backend_is_light():
    """Importing the plugin, describing the backend and its contributions (optimize target,
    doctor rule) loads no vendor stack, not even numpy."""
    heavy = ("numpy", "onnx", "onnxruntime", "onnxruntime_genai", "olive", "torch", "transformers")
    code = ("import sys, json, edgesmith_olive.plugin as p; p.edgesmith_backend(); "
            "p.edgesmith_optimize_targets(); p.edgesmith_doctor_rules(); "
            f"print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_quantize_path_follows_activation_bits(f16_bundle, tmp_path):
    """--activation-bits picks the static path, which refuses a GenAI bundle; without it a
    plain ONNX graph reaches the bundle path, which asks for --activation-bits."""
    out = tmp_path / "out"
    refused(["quantize", f16_bundle, "--bits", "8", "--activation-bits", "8", "-o", out, "-b", "olive"],
            "QDQ", "for GenAI bundles use weight-only --bits 4/8")
    plain = tmp_path / "plain"
    plain.mkdir()
    shutil.copyfile(f16_bundle / "model.onnx", plain / "model.onnx")
    refused(["quantize", plain, "--bits", "4", "-o", out, "-b", "olive"],
            "not an ONNX Runtime GenAI bundle", "--activation-bits 8")
    assert not out.exists()
