"""Quantization options against the real mlx-lm: bits x group size, the
fp modes, mixed recipes, the group-size check, re-quantizing and GPTQ."""

from __future__ import annotations

import json

import pytest

from edgesmith import api
from edgesmith.errors import UnsupportedError, UserError
from edgesmith.formats import safetensors_summary


def _config(path):
    return json.loads((path / "config.json").read_text())


def _details(art):
    return json.loads((art.path / "edgesmith.json").read_text())["details"]


def _quantized_layers(path):
    import mlx.nn as nn
    from mlx_lm import load

    model, _ = load(str(path))
    return {name: m for name, m in model.named_modules() if isinstance(m, (nn.QuantizedLinear,
                                                                           nn.QuantizedEmbedding))}


@pytest.mark.parametrize("bits", [2, 3, 4, 5, 6, 8])
@pytest.mark.parametrize("group_size", [32, 64, 128])
def test_bits_and_group_sizes(bits, group_size, mlx_f16, tmp_path):
    art = api.quantize(mlx_f16("llama"), tmp_path / "q", bits=bits, group_size=group_size, backend="mlx")
    q = _config(art.path)["quantization"]
    assert (q["bits"], q["group_size"], q["mode"]) == (bits, group_size, "affine")
    layers = _quantized_layers(art.path)
    assert layers and {(m.bits, m.group_size) for m in layers.values()} == {(bits, group_size)}
    # f16 scale + bias per group on top of the packed bits.
    assert _details(art)["bits_per_weight"] == pytest.approx(bits + 32 / group_size, abs=0.25)


@pytest.mark.parametrize("mode,bits,group", [("mxfp4", 4, 32), ("nvfp4", 4, 16), ("mxfp8", 8, 32)])
def test_fp_modes_quantize_and_run(mode, bits, group, mlx_f16, tmp_path):
    art = api.quantize(mlx_f16("qwen2"), tmp_path / mode, scheme=mode, backend="mlx")
    q = _config(art.path)["quantization"]
    assert (q["mode"], q["bits"], q["group_size"]) == (mode, bits, group)
    assert {m.mode for m in _quantized_layers(art.path).values()} == {mode}
    result = api.run(art.path, "Rain came", max_tokens=3, backend="mlx")
    assert result.generated_tokens >= 1


def test_mixed_recipe_gives_sensitive_layers_more_bits(mlx_f16, tmp_path):
    art = api.quantize(mlx_f16("phi3"), tmp_path / "mixed", scheme="mixed_3_6", backend="mlx")
    bits = {m.bits for m in _quantized_layers(art.path).values()}
    assert bits == {3, 6}
    d = _details(art)
    assert d["recipe"] == "mixed_3_6" and 3.0 < d["bits_per_weight"] < 6.0
    assert api.run(art.path, "Hello", max_tokens=2, backend="mlx").generated_tokens >= 1


def test_bits_per_weight_matches_mlx_lm(mlx_f16, tmp_path):
    """edgesmith's 4-bit group-64 figure equals mlx-lm's own quantize_model figure."""
    import mlx.core as mx
    from mlx.utils import tree_map
    from mlx_lm import load
    from mlx_lm.utils import compute_bits_per_weight, quantize_model

    src = mlx_f16("qwen2")
    art = api.quantize(src, tmp_path / "q4", bits=4, group_size=64, backend="mlx")
    model, _, config = load(str(src), return_config=True)
    model.update(tree_map(lambda v: v.astype(mx.float16) if mx.issubdtype(v.dtype, mx.floating) else v,
                          model.parameters()))
    model, _ = quantize_model(model, config, 64, 4)
    assert _details(art)["bits_per_weight"] == round(compute_bits_per_weight(model), 4)


def test_group_size_must_divide_every_layer(tiny_model, tmp_path):
    odd = tiny_model("llama", intermediate_size=320)
    with pytest.raises(UserError, match="does not divide.*down_proj.*320.*--group-size 32 or 64"):
        api.quantize(odd, tmp_path / "bad", bits=4, group_size=128, backend="mlx")
    assert not (tmp_path / "bad").exists()
    # Opting in keeps mlx-lm's behaviour: those layers stay in float.
    art = api.quantize(odd, tmp_path / "skip", bits=4, group_size=128, backend="mlx",
                       options={"indivisible": "skip"})
    skipped = _details(art)["unquantized_layers"]
    assert skipped == ["model.layers.0.mlp.down_proj", "model.layers.1.mlp.down_proj"]
    assert not any("down_proj" in name for name in _quantized_layers(art.path))


def test_dequantize_then_quantize_again(mlx_q4, tmp_path):
    deq = api.convert(mlx_q4("llama"), "mlx", tmp_path / "deq", backend="mlx", dtype="float16")
    assert "quantization" not in _config(deq.path)
    assert _details(deq)["dequantized_from"] == "affine 4-bit group 64"
    assert _details(deq)["bits_per_weight"] == 16.0
    art = api.quantize(deq.path, tmp_path / "q8", bits=8, backend="mlx")
    assert _config(art.path)["quantization"]["bits"] == 8


def test_allow_requantize_dequantizes_first(mlx_q4, tmp_path):
    art = api.quantize(mlx_q4("llama"), tmp_path / "q3", bits=3, backend="mlx", allow_requantize=True)
    assert _details(art)["requantized_from"] == "affine 4-bit group 64"
    assert {m.bits for m in _quantized_layers(art.path).values()} == {3}


def test_gptq_from_calibration_text(mlx_f16, tmp_path):
    from edgesmith.testing.tiny import corpus_text

    calib = tmp_path / "calib.txt"
    calib.write_text(corpus_text())
    art = api.quantize(mlx_f16("llama"), tmp_path / "gptq", bits=4, group_size=64, method="gptq",
                       calibration=calib, backend="mlx",
                       options={"calibration_samples": "4", "calibration_length": "64"})
    d = _details(art)
    assert d["method"] == "gptq" and d["bits"] == 4
    layers = _quantized_layers(art.path)
    assert layers["model.layers.0.self_attn.q_proj"].bits == 4
    assert layers["model.embed_tokens"].bits == 6  # mlx-lm's GPTQ fallback for embeddings
    # Searched in float32, stored in the source's float16 like round-to-nearest.
    assert set(safetensors_summary(art.path)["dtypes"]) == {"U32", "F16"}
    assert api.run(art.path, "The morning", max_tokens=3, backend="mlx").generated_tokens >= 1


def test_calibration_too_short(mlx_f16, tmp_path):
    calib = tmp_path / "calib.txt"
    calib.write_text("hi")
    with pytest.raises(UserError, match="only .* tokens"):
        api.quantize(mlx_f16("llama"), tmp_path / "x", bits=4, method="gptq", calibration=calib,
                     backend="mlx")
    assert not (tmp_path / "x").exists()


def test_dwq_is_refused_with_a_reason(mlx_f16, tmp_path):
    calib = tmp_path / "calib.txt"
    calib.write_text("text " * 100)
    with pytest.raises(UnsupportedError, match="dwq.*gptq or awq"):
        api.quantize(mlx_f16("llama"), tmp_path / "x", bits=4, method="dwq", calibration=calib,
                     backend="mlx")


def test_awq_from_calibration_text(mlx_f16, tmp_path):
    from edgesmith.testing.tiny import corpus_text

    calib = tmp_path / "calib.txt"
    calib.write_text(corpus_text())
    art = api.quantize(mlx_f16("qwen2"), tmp_path / "awq", bits=4, method="awq", calibration=calib,
                       backend="mlx", options={"calibration_samples": "2", "calibration_length": "64"})
    assert _details(art)["method"] == "awq"
    assert {m.bits for m in _quantized_layers(art.path).values()} == {4}
    assert api.run(art.path, "Hello", max_tokens=2, backend="mlx").generated_tokens >= 1
