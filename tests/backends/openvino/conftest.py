"""Shared fixtures for the OpenVINO backend tests: tiny checkpoints exported to
IR and compressed once per session with the real optimum-intel, NNCF and
openvino-genai (CPU)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("openvino_genai", reason="edgesmith-openvino is not installed with its stack")

from edgesmith import api  # noqa: E402

# tiny_model and the autouse offline guard come from edgesmith.testing.fixtures,
# which tests/conftest.py loads as a plugin.

ARCHS = ("llama", "qwen2", "phi3")


@pytest.fixture(scope="session")
def ov_fp16(tiny_model, tmp_path_factory) -> Callable[[str], Path]:
    """``ov_fp16(arch)``: the tiny checkpoint exported to an fp16 IR with its tokenizers."""
    # optimum-intel is a dependency of edgesmith-openvino (its own environment: it caps
    # transformers below what other backends need; see the backend docs).
    pytest.importorskip("optimum.intel", reason="Hugging Face export needs optimum-intel, "
                        "a dependency of edgesmith-openvino: reinstall it")
    cache: dict[str, Path] = {}

    def make(arch: str) -> Path:
        if arch not in cache:
            out = tmp_path_factory.mktemp(f"ov-{arch}") / "fp16"
            api.convert(tiny_model(arch), "openvino", out, backend="openvino", dtype="fp16")
            cache[arch] = out
        return cache[arch]

    return make


@pytest.fixture(scope="session")
def ov_int4(ov_fp16, tmp_path_factory) -> Callable[[str], Path]:
    """``ov_int4(arch)``: the fp16 IR compressed to INT4_ASYM, group size 64."""
    cache: dict[str, Path] = {}

    def make(arch: str) -> Path:
        if arch not in cache:
            out = tmp_path_factory.mktemp(f"ov-{arch}") / "int4"
            api.quantize(ov_fp16(arch), out, scheme="int4_asym", group_size=64, backend="openvino")
            cache[arch] = out
        return cache[arch]

    return make


def write_tiny_encoder(path: Path, seq: int = 16, hidden: int = 64, seed: int = 0) -> Path:
    """A small transformer-style encoder block as ONNX, built with onnx.helper:
    projection, ReLU MLP with a residual, layer norm. Two named inputs."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)

    def init(name: str, *shape: int, scale: float = 0.1) -> onnx.TensorProto:
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)

    inits = [init("w_in", hidden, hidden), init("b_in", hidden), init("w_up", hidden, 4 * hidden),
             init("b_up", 4 * hidden), init("w_down", 4 * hidden, hidden), init("b_down", hidden),
             numpy_helper.from_array(np.ones(hidden, np.float32), "ln_scale"),
             numpy_helper.from_array(np.zeros(hidden, np.float32), "ln_bias")]
    nodes = [
        helper.make_node("Add", ["features", "bias_in"], ["x0"]),
        helper.make_node("MatMul", ["x0", "w_in"], ["x1"]),
        helper.make_node("Add", ["x1", "b_in"], ["x2"]),
        helper.make_node("MatMul", ["x2", "w_up"], ["u1"]),
        helper.make_node("Add", ["u1", "b_up"], ["u2"]),
        helper.make_node("Relu", ["u2"], ["u3"]),
        helper.make_node("MatMul", ["u3", "w_down"], ["d1"]),
        helper.make_node("Add", ["d1", "b_down"], ["d2"]),
        helper.make_node("Add", ["d2", "x2"], ["res"]),
        helper.make_node("LayerNormalization", ["res", "ln_scale", "ln_bias"], ["embeddings"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes, "tiny_encoder",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", seq, hidden]),
         helper.make_tensor_value_info("bias_in", TensorProto.FLOAT, ["batch", seq, hidden])],
        [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["batch", seq, hidden])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def write_text_encoder(folder: Path, hidden: int = 64, seed: int = 0) -> Path:
    """A small text encoder as ONNX with a trained byte-level BPE tokenizer.json
    beside it: token embedding (vocabulary of the tokenizer), masked, a ReLU MLP
    with a residual, layer norm. Inputs input_ids and attention_mask [batch, seq]."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgesmith.testing.tiny import train_tokenizer

    folder.mkdir(parents=True, exist_ok=True)
    tok = train_tokenizer(384)
    tok.save(str(folder / "tokenizer.json"))
    vocab = tok.get_vocab_size()
    rng = np.random.default_rng(seed)

    def init(name: str, *shape: int, scale: float = 0.1) -> onnx.TensorProto:
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)

    inits = [init("embed", vocab, hidden, scale=1.0), init("w_up", hidden, 4 * hidden),
             init("b_up", 4 * hidden), init("w_down", 4 * hidden, hidden), init("b_down", hidden),
             numpy_helper.from_array(np.ones(hidden, np.float32), "ln_scale"),
             numpy_helper.from_array(np.zeros(hidden, np.float32), "ln_bias"),
             numpy_helper.from_array(np.asarray([-1], np.int64), "last_axis")]
    nodes = [
        helper.make_node("Gather", ["embed", "input_ids"], ["e"], axis=0),
        helper.make_node("Cast", ["attention_mask"], ["m0"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["m0", "last_axis"], ["m"]),
        helper.make_node("Mul", ["e", "m"], ["x"]),
        helper.make_node("MatMul", ["x", "w_up"], ["u1"]),
        helper.make_node("Add", ["u1", "b_up"], ["u2"]),
        helper.make_node("Relu", ["u2"], ["u3"]),
        helper.make_node("MatMul", ["u3", "w_down"], ["d1"]),
        helper.make_node("Add", ["d1", "b_down"], ["d2"]),
        helper.make_node("Add", ["d2", "x"], ["res"]),
        helper.make_node("LayerNormalization", ["res", "ln_scale", "ln_bias"], ["last_hidden_state"],
                         axis=-1),
    ]
    graph = helper.make_graph(
        nodes, "tiny_text_encoder",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "seq", hidden])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, str(folder / "model.onnx"))
    return folder


@pytest.fixture(scope="session")
def tiny_encoder() -> Callable[..., Path]:
    """``tiny_encoder(path)`` writes the small ONNX encoder and returns its path."""
    return write_tiny_encoder


@pytest.fixture(scope="session")
def text_encoder() -> Callable[..., Path]:
    """``text_encoder(folder)`` writes the ONNX text encoder and its tokenizer.json."""
    return write_text_encoder
