"""HF -> MLX conversion in each float dtype; what lands in the directory."""

from __future__ import annotations

import json
import shutil

import pytest

from edgesmith import api
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
