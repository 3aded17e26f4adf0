"""HF -> MLX conversion in each float dtype; what lands in the directory."""

from __future__ import annotations

import json
import shutil
import struct

import pytest

from edgesmith import api
from edgesmith.errors import UserError
from edgesmith.formats import safetensors_summary

_ST = {"float16": "F16", "bfloat16": "BF16", "float32": "F32"}


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_convert_dtypes(dtype, tiny_model, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(tiny_model("qwen2"), src)  # the session's checkpoint stays untouched
    (src / "modeling_evil.py").write_text("raise SystemExit('remote code ran')\n")
    art = api.convert(src, "mlx", tmp_path / dtype, backend="mlx", dtype=dtype)
    names = {p.name for p in art.path.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json",
            "generation_config.json", "edgesmith.json"} <= names
    assert "modeling_evil.py" not in names  # model code travels only with --trust-remote-code
    assert set(safetensors_summary(art.path)["dtypes"]) == {_ST[dtype]}
    config = json.loads((art.path / "config.json").read_text())
    assert config["torch_dtype"] == dtype and "quantization" not in config
    details = json.loads((art.path / "edgesmith.json").read_text())["details"]
    assert details["bits_per_weight"] == (32.0 if dtype == "float32" else 16.0)
    assert "--dtype " + dtype in details["native_command"]
    with api.load(art.path, backend="mlx") as runner:
        prompt = runner.chat_prompt([{"role": "user", "content": "Hello"}])
    assert prompt.endswith("<|im_start|>assistant\n")


def test_dtype_alias_and_recast(tiny_model, tmp_path):
    art = api.convert(tiny_model("llama"), "mlx", tmp_path / "out", backend="mlx",
                      options={"dtype": "bf16"})
    assert json.loads((art.path / "config.json").read_text())["torch_dtype"] == "bfloat16"
    again = api.convert(art.path, "mlx", tmp_path / "again", backend="mlx", dtype="float32")
    assert set(safetensors_summary(again.path)["dtypes"]) == {"F32"}


def test_rope_base_saved_only_in_rope_parameters_is_used(tiny_model, tmp_path):
    """transformers 5 writes the RoPE base only under rope_parameters; mlx-lm reads
    the top-level key and would fall back to 10000 without the backend's fix."""
    from pathlib import Path

    import numpy as np

    def variant(name: str, top: float | None, nested: float | None) -> Path:
        d = tmp_path / name
        shutil.copytree(tiny_model("llama"), d)
        cfg = json.loads((d / "config.json").read_text())
        cfg.pop("rope_theta", None)
        cfg.pop("rope_parameters", None)
        if top is not None:
            cfg["rope_theta"] = top
        if nested is not None:
            cfg["rope_parameters"] = {"rope_type": "default", "rope_theta": nested}
        (d / "config.json").write_text(json.dumps(cfg))
        return d

    ids = list(range(3, 40))

    def scores(src: Path) -> np.ndarray:
        out = api.convert(src, "mlx", src.with_name(src.name + "-mlx"), backend="mlx").path
        with api.load(out, backend="mlx") as runner:
            return runner.logprobs(ids)

    top = scores(variant("top", 500000.0, None))
    nested = scores(variant("nested", None, 500000.0))
    default = scores(variant("default", 10000.0, None))
    np.testing.assert_allclose(nested, top, atol=1e-5)
    assert np.abs(default - top).max() > 1e-3  # the base matters on this model, so the check can fail


def test_missing_tokenizer_is_one_clear_line(tiny_model, tmp_path):
    src = tmp_path / "no-tokenizer"
    shutil.copytree(tiny_model("llama"), src)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (src / name).unlink(missing_ok=True)
    with pytest.raises(UserError, match="no tokenizer: none of tokenizer.json, .*copy the tokenizer files") as info:
        api.convert(src, "mlx", tmp_path / "out", backend="mlx")
    assert "\n" not in str(info.value) and "sentencepiece" not in str(info.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("damage", ["truncated", "trailing-garbage"])
def test_corrupt_weights_are_a_user_error(damage, tiny_model, tmp_path):
    """A valid header over missing or extra data: one line, not mlx's RuntimeError."""
    src = tmp_path / damage
    shutil.copytree(tiny_model("llama"), src)
    data = (src / "model.safetensors").read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    (src / "model.safetensors").write_bytes(data[: 8 + n + 100] if damage == "truncated" else data + b"junk" * 64)
    with pytest.raises(UserError, match="model.safetensors .*re-download or re-export") as info:
        api.convert(src, "mlx", tmp_path / "out", backend="mlx")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()
