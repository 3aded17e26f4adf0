"""Format detection and `inspect` on every format, with light readers only."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgesmith import api
from edgesmith.formats import detect


def test_hf_checkpoint(tiny_model):
    info = api.inspect(tiny_model("qwen2"))
    assert info["format"] == "hf" and info["architecture"] == "Qwen2ForCausalLM"
    assert info["tokenizer"] and info["chat_template"]
    # Parameters from safetensors headers: embed + 2 layers (+ biases) + norm.
    h, i, v, kv = 256, 768, info["vocab_size"], 128
    per_layer = h * h * 2 + h * kv * 2 + 3 * h * i + 2 * h + (h + 2 * kv)
    assert info["parameters"] == v * h + 2 * per_layer + h
    assert info["dtype"] == "float32"
    assert "ref" in info["backends"] and "run" in info["backends"]["ref"]


def test_gguf_file(tmp_path):
    gguf = pytest.importorskip("gguf")
    path = tmp_path / "m.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(1)
    w.add_context_length(256)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_chat_template("{{ messages }}")
    w.add_tensor("token_embd.weight", np.zeros((8, 4), dtype=np.float32))
    w.add_tensor("output_norm.weight", np.ones(4, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    info = api.inspect(path)
    assert info["format"] == "gguf" and info["architecture"] == "llama"
    assert info["tensor_count"] == 2 and info["parameters"] == 36
    assert info["file_type"] == "ALL_F32" and info["chat_template"] and info["context_length"] == 256
    # In a directory next to other files it is found too.
    d = tmp_path / "dir"
    d.mkdir()
    (d / "model.gguf").write_bytes(path.read_bytes())
    assert detect(d).entry == "model.gguf"


def test_truncated_gguf_is_a_user_error(tmp_path):
    from edgesmith.errors import UserError

    p = tmp_path / "bad.gguf"
    p.write_bytes(b"GGUF\x03\x00\x00\x00garbage")
    with pytest.raises(UserError, match="not a readable GGUF"):
        api.inspect(p)


def test_openvino_ir(tmp_path):
    (tmp_path / "openvino_model.xml").write_text(
        '<?xml version="1.0"?>\n<net name="tiny" version="11"><layers>'
        '<layer id="0" name="input_ids" type="Parameter" version="opset1">'
        '<data shape="?,?" element_type="i64"/></layer>'
        '<layer id="1" name="w" type="Const" version="opset1"><data element_type="u4" shape="4,4" offset="0" size="8"/></layer>'
        '</layers><edges/></net>'
    )
    (tmp_path / "openvino_model.bin").write_bytes(b"\0" * 8)
    info = api.inspect(tmp_path)
    assert info["format"] == "openvino" and info["inputs"] == {"input_ids": "?,?"}
    assert info["constant_types"] == {"u4": 1}


def test_mlx_directory(tiny_model, tmp_path):
    import shutil

    d = tmp_path / "mlx"
    shutil.copytree(tiny_model("llama"), d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["quantization"] = {"group_size": 64, "bits": 4}
    (d / "config.json").write_text(json.dumps(cfg))
    info = api.inspect(d)
    assert info["format"] == "mlx" and info["quantization"]["bits"] == 4


def test_float_mlx_directory_by_safetensors_tag(tiny_model, tmp_path):
    import shutil

    from safetensors.numpy import load_file, save_file

    d = tmp_path / "mlx-float"
    shutil.copytree(tiny_model("llama"), d)
    assert detect(d).format == "hf"
    save_file(load_file(str(d / "model.safetensors")), str(d / "model.safetensors"), metadata={"format": "mlx"})
    assert detect(d).format == "mlx"


def test_onnx_and_epcontext(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    onnx.save(helper.make_model(g), str(tmp_path / "model.onnx"))
    info = api.inspect(tmp_path / "model.onnx")
    assert info["format"] == "onnx" and info["inputs"] == {"x": [1, 4]} and info["op_counts"] == {"Relu": 1}
    node = helper.make_node("EPContext", ["x"], ["y"], domain="com.microsoft", embed_mode=0,
                            ep_cache_context="model_ctx_qnn.bin")
    g = helper.make_graph([node], "g", [x], [y])
    onnx.save(helper.make_model(g), str(tmp_path / "ctx.onnx"))
    info = api.inspect(tmp_path / "ctx.onnx")
    assert info["format"] == "qnn" and info["epcontext_nodes"] == 1
    assert info["context_binary"] == "model_ctx_qnn.bin"
