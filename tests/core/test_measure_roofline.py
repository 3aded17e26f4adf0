"""The physical roofline: read bandwidth, and the bytes one decoded token reads.

Each test writes a small real artifact (GGUF through the gguf package, the
others byte by byte) and derives the expected count from the arrays it wrote:
every tensor once, one row of the input table, the KV cache at the depth.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from edgesmith.errors import UserError
from edgesmith.measure import bandwidth, decodebytes

V, H = 64, 32  # vocabulary and hidden size of every tiny model here


def _config(directory: Path, tied: bool, **extra) -> None:
    cfg = {"vocab_size": V, "hidden_size": H, "num_hidden_layers": 2, "num_attention_heads": 4,
           "num_key_value_heads": 2, "head_dim": 8, "tie_word_embeddings": tied, **extra}
    (directory / "config.json").write_text(json.dumps(cfg))


#: KV bytes per token of that config, per byte of element: 2 (K and V) x layers x KV heads x head dim.
KV_ELEMENTS = 2 * 2 * 2 * 8


# -- bandwidth --------------------------------------------------------------------


def test_bandwidth_reports_read_and_copy_figures():
    bw = bandwidth.measure(threads=2, nbytes=8 << 20, passes=3)
    assert bw["gb_per_s"] > 0 and bw["copy_gb_per_s"] > 0
    assert set(bw["by_threads"]) == {"1", "2"} == set(bw["copy_by_threads"])
    assert bw["gb_per_s"] == max(bw["by_threads"].values()) == bw["by_threads"][str(bw["threads"])]
    assert len(bw["runs"]) == bw["passes"] == 3 and max(bw["runs"]) == pytest.approx(bw["gb_per_s"])
    assert bw["array_bytes"] == 8 << 20
    assert bw["array_bytes"] / bw["best_seconds"] / 1e9 == pytest.approx(bw["gb_per_s"])
    assert "reduce" in bw["method"]


def test_bandwidth_refuses_a_buffer_too_small_to_time():
    with pytest.raises(UserError, match="--bandwidth-mib"):
        bandwidth.measure(nbytes=4096)


# -- GGUF -------------------------------------------------------------------------


def _gguf(path: Path, tied: bool) -> dict[str, int]:
    """A two-layer llama GGUF with a Q8_0 embedding; returns the bytes of its tensors by role."""
    import gguf

    rng = np.random.default_rng(0)
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(2)
    w.add_embedding_length(H)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_key_length(8)
    w.add_value_length(8)
    w.add_vocab_size(V)
    q8 = gguf.GGMLQuantizationType.Q8_0
    table = gguf.quants.quantize(rng.standard_normal((V, H), dtype=np.float32), q8)
    w.add_tensor("token_embd.weight", table, raw_dtype=q8)
    sizes = {"table": table.nbytes, "rest": 0}
    for i in range(2):
        for name, shape in (("attn_q", (H, H)), ("attn_k", (16, H)), ("ffn_up", (3 * H, H))):
            a = rng.standard_normal(shape).astype(np.float16)
            w.add_tensor(f"blk.{i}.{name}.weight", a)
            sizes["rest"] += a.nbytes
    norm = np.ones(H, dtype=np.float32)
    w.add_tensor("output_norm.weight", norm)
    sizes["rest"] += norm.nbytes
    if not tied:
        out = rng.standard_normal((V, H)).astype(np.float16)
        w.add_tensor("output.weight", out)
        sizes["output"] = out.nbytes
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return sizes


def test_gguf_tied_embedding_is_read_once_in_full(tmp_path):
    sizes = _gguf(tmp_path / "tied.gguf", tied=True)
    r = decodebytes.per_token(tmp_path / "tied.gguf", depth=10)
    row = sizes["table"] // V
    assert r["tied"] is True and r["embedding_table"] == r["output_projection"] == sizes["table"]
    assert r["embedding_row"] == row
    assert r["kv_bytes_per_token"] == KV_ELEMENTS * 2  # llama.cpp's f16 cache
    assert r["bytes"] == sizes["rest"] + sizes["table"] + row + 10 * KV_ELEMENTS * 2


def test_gguf_untied_embedding_counts_one_row(tmp_path):
    sizes = _gguf(tmp_path / "untied.gguf", tied=False)
    r = decodebytes.per_token(tmp_path / "untied.gguf")
    assert r["tied"] is False and r["output_projection"] == sizes["output"]
    assert r["embedding_table"] == sizes["table"] and r["kv_cache"] == 0
    assert r["bytes"] == sizes["rest"] + sizes["output"] + sizes["table"] // V
    assert r["stored_bytes"] == sizes["rest"] + sizes["output"] + sizes["table"]


def test_a_truncated_gguf_gives_a_reason_not_a_count(tmp_path):
    _gguf(tmp_path / "m.gguf", tied=True)
    data = (tmp_path / "m.gguf").read_bytes()
    (tmp_path / "m.gguf").write_bytes(data[: len(data) // 2])
    r = decodebytes.per_token(tmp_path / "m.gguf")
    assert r["bytes"] is None and r["weights"] is None and "could not be read" in r["reason"]


# -- safetensors ------------------------------------------------------------------


def _safetensors(path: Path, tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None) -> None:
    codes = {"float32": "F32", "float16": "F16", "uint32": "U32"}
    header: dict = {"__metadata__": metadata} if metadata else {}
    blobs, offset = [], 0
    for name, a in tensors.items():
        header[name] = {"dtype": codes[a.dtype.name], "shape": list(a.shape),
                        "data_offsets": [offset, offset + a.nbytes]}
        blobs.append(a.tobytes())
        offset += a.nbytes
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"".join(blobs))


def _layers(dtype: str) -> dict[str, np.ndarray]:
    return {f"model.layers.{i}.{name}": np.zeros(shape, dtype=dtype)
            for i in range(2) for name, shape in (("self_attn.q_proj.weight", (H, H)),
                                                  ("mlp.up_proj.weight", (3 * H, H)),
                                                  ("input_layernorm.weight", (H,)))}


def test_mlx_quantized_tied_embedding_reads_data_scales_and_biases_once(tmp_path):
    groups = H // 16
    table = {"model.embed_tokens.weight": np.zeros((V, H // 8), dtype=np.uint32),  # 4-bit, 8 per word
             "model.embed_tokens.scales": np.zeros((V, groups), dtype=np.float16),
             "model.embed_tokens.biases": np.zeros((V, groups), dtype=np.float16)}
    rest = _layers("float16")
    _safetensors(tmp_path / "model.safetensors", {**table, **rest}, {"format": "mlx"})
    _config(tmp_path, tied=True, quantization={"group_size": 16, "bits": 4})
    r = decodebytes.per_token(tmp_path, depth=3)
    table_bytes = sum(a.nbytes for a in table.values())
    row = sum(a.nbytes // V for a in table.values())
    assert r["tied"] is True and r["embedding_table"] == table_bytes and r["embedding_row"] == row
    assert r["kv_dtype_bytes"] == 2  # the float type of the norms
    assert r["bytes"] == sum(a.nbytes for a in rest.values()) + table_bytes + row + 3 * KV_ELEMENTS * 2


def test_hf_untied_counts_the_head_and_one_row_as_float32(tmp_path):
    tensors = {"model.embed_tokens.weight": np.zeros((V, H), dtype=np.float16),
               "lm_head.weight": np.zeros((V, H), dtype=np.float16), **_layers("float16")}
    _safetensors(tmp_path / "model.safetensors", tensors)
    _config(tmp_path, tied=False)
    r = decodebytes.per_token(tmp_path)
    full = sum(a.size for n, a in tensors.items() if "embed_tokens" not in n) * 4
    assert r["tied"] is False and r["output_projection"] == V * H * 4
    assert r["bytes"] == full + H * 4
    assert r["stored_bytes"] == sum(a.nbytes for a in tensors.values())


def test_hf_tied_config_with_a_stored_head_copy_reads_one_matrix(tmp_path):
    tensors = {"model.embed_tokens.weight": np.zeros((V, H), dtype=np.float32),
               "lm_head.weight": np.zeros((V, H), dtype=np.float32), **_layers("float32")}
    _safetensors(tmp_path / "model.safetensors", tensors)
    _config(tmp_path, tied=True)
    r = decodebytes.per_token(tmp_path)
    rest = sum(a.nbytes for n, a in tensors.items() if n.startswith("model.layers"))
    assert r["tied"] is True and r["bytes"] == rest + V * H * 4 + H * 4  # not the table twice


def test_sliding_window_layers_cap_the_kv_cache(tmp_path):
    _safetensors(tmp_path / "model.safetensors", {"model.embed_tokens.weight": np.zeros((V, H), dtype=np.float32),
                                                  **_layers("float32")})
    _config(tmp_path, tied=True, sliding_window=4, layer_types=["sliding_attention", "full_attention"])
    r = decodebytes.per_token(tmp_path, depth=10)
    per_layer = KV_ELEMENTS // 2 * 4  # float32
    assert r["kv_bytes_per_token"] == 2 * per_layer and r["kv_cache"] == per_layer * 4 + per_layer * 10


def test_negative_depth_is_refused(tmp_path):
    _gguf(tmp_path / "m.gguf", tied=True)
    with pytest.raises(UserError, match="0 or more"):
        decodebytes.per_token(tmp_path / "m.gguf", depth=-1)


# -- ONNX, written as protobuf bytes ---------------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def _f(number: int, value: int | bytes | str) -> bytes:
    if isinstance(value, int):
        return _varint(number << 3) + _varint(value)
    data = value.encode() if isinstance(value, str) else value
    return _varint(number << 3 | 2) + _varint(len(data)) + data


FLOAT, UINT8, INT64, FLOAT16 = 1, 2, 7, 10


def _tensor(name: str, a: np.ndarray, code: int, external: tuple[str, int] | None = None) -> bytes:
    msg = b"".join(_f(1, d) for d in a.shape) + _f(2, code) + _f(8, name)
    if external is None:
        return msg + _f(9, a.tobytes())
    location, offset = external
    entries = [("location", location), ("offset", str(offset)), ("length", str(a.nbytes))]
    return msg + b"".join(_f(13, _f(1, k) + _f(2, v)) for k, v in entries) + _f(14, 1)


def _node(op: str, inputs: list[str], outputs: list[str], attrs: bytes = b"", domain: str = "") -> bytes:
    return (b"".join(_f(1, i) for i in inputs) + b"".join(_f(2, o) for o in outputs) + _f(4, op)
            + attrs + (_f(7, domain) if domain else b""))


def _input(name: str, elem: int) -> bytes:
    return _f(1, name) + _f(2, _f(1, _f(1, elem)))


def _onnx(directory: Path, nodes: list[bytes], inits: list[bytes], kv_elem: int = FLOAT16) -> Path:
    graph = (b"".join(_f(1, n) for n in nodes) + _f(2, "g") + b"".join(_f(5, t) for t in inits)
             + _f(11, _input("input_ids", INT64)) + _f(11, _input("past_key_values.0.key", kv_elem)))
    model = _f(1, 8) + _f(8, _f(2, 17)) + _f(7, graph)
    (directory / "model.onnx").write_bytes(model)
    decoder = {"num_hidden_layers": 2, "num_key_value_heads": 2, "head_size": 8,
               "inputs": {"past_key_names": "past_key_values.%d.key"}}
    (directory / "genai_config.json").write_text(json.dumps({"model": {"vocab_size": V, "decoder": decoder}}))
    return directory / "model.onnx"


def test_onnx_stored_head_copy_is_read_and_the_table_gives_one_row(tmp_path):
    """What ONNX exports of a tied checkpoint do: Gather over the table, MatMul over a transposed copy."""
    table = np.zeros((V, H), dtype=np.float32)
    head = np.zeros((H, V), dtype=np.float32)
    w = np.zeros((H, 3 * H), dtype=np.float32)
    rotary = np.zeros((16, 4), dtype=np.float32)  # a position-indexed cos cache
    (tmp_path / "model.onnx.data").write_bytes(w.tobytes() + head.tobytes())
    const = _f(5, _f(1, "value") + _f(5, _tensor("", np.zeros((3 * H, H), dtype=np.float32), FLOAT)) + _f(20, 4))
    nodes = [_node("Gather", ["embed", "input_ids"], ["x"]),
             _node("MatMul", ["x", "w"], ["y"]),
             _node("Constant", [], ["w2"], attrs=const),
             _node("MatMul", ["y", "w2"], ["y2"]),
             _node("MatMul", ["y2", "w_alias"], ["z"]),
             _node("GroupQueryAttention", ["z", "", "", "", "", "", "", "cos", "cos"], ["a"], domain="com.microsoft"),
             _node("MatMul", ["a", "lm_head"], ["logits"])]
    inits = [_tensor("embed", table, FLOAT), _tensor("w", w, FLOAT, ("model.onnx.data", 0)),
             _tensor("lm_head", head, FLOAT, ("model.onnx.data", w.nbytes)), _tensor("cos", rotary, FLOAT),
             _tensor("w_alias", w, FLOAT, ("model.onnx.data", 0))]  # the same stored bytes as "w": read once
    path = _onnx(tmp_path, nodes, inits)
    r = decodebytes.per_token(path, depth=5)
    assert r["tied"] is False and r["embedding_table"] == table.nbytes and r["embedding_row"] == H * 4
    assert r["output_projection"] == head.nbytes and r["other_rows"] == 4 * 4
    assert r["kv_dtype_bytes"] == 2  # from the graph's past_key_values input, float16
    weights = w.nbytes + head.nbytes + 3 * H * H * 4
    assert r["weights"] == weights
    assert r["bytes"] == weights + H * 4 + 4 * 4 + 5 * KV_ELEMENTS * 2
    _same_as_onnx_package(path, {"embed", "w", "lm_head", "cos", "w_alias"})


def test_onnx_tied_qdq_embedding_is_read_once(tmp_path):
    """One int8 matrix behind a DequantizeLinear feeds both the Gather and the output MatMul."""
    table = np.zeros((V, H), dtype=np.uint8)
    scale = np.ones(V, dtype=np.float32)
    w = np.zeros((H, H), dtype=np.float32)
    nodes = [_node("DequantizeLinear", ["embed_q", "embed_scale"], ["embed"]),
             _node("Gather", ["embed", "input_ids"], ["x"]),
             _node("MatMul", ["x", "w"], ["y"]),
             _node("Transpose", ["embed"], ["embed_t"]),
             _node("MatMul", ["y", "embed_t"], ["logits"])]
    inits = [_tensor("embed_q", table, UINT8), _tensor("embed_scale", scale, FLOAT), _tensor("w", w, FLOAT)]
    r = decodebytes.per_token(_onnx(tmp_path, nodes, inits, kv_elem=FLOAT))
    assert r["tied"] is True and r["embedding_table"] == table.nbytes + scale.nbytes
    assert r["embedding_row"] == H + 4 and r["kv_bytes_per_token"] == KV_ELEMENTS * 4
    assert r["bytes"] == w.nbytes + table.nbytes + scale.nbytes + H + 4


def test_qnn_context_binary_is_not_counted(tmp_path):
    _onnx(tmp_path, [_node("EPContext", ["input_ids"], ["logits"], domain="com.microsoft")], [])
    r = decodebytes.per_token(tmp_path)
    assert r["bytes"] is None and "opaque" in r["reason"]


def _same_as_onnx_package(path: Path, names: set[str]) -> None:
    """Where the onnx package is installed, it must read these hand-written bytes as the same model."""
    try:
        import onnx
    except ImportError:
        return
    model = onnx.load(str(path), load_external_data=False)
    assert {t.name for t in model.graph.initializer} == names
    assert [n.op_type for n in model.graph.node][:2] == ["Gather", "MatMul"]


# -- OpenVINO IR ------------------------------------------------------------------


def _openvino(directory: Path, tied: bool) -> dict[str, int]:
    """A Gather -> MatMul -> output MatMul IR; the table is u8 with a zero point and an f16 scale."""
    consts = {"embed": np.zeros((V, H), dtype=np.uint8), "zp": np.zeros((V, 1), dtype=np.uint8),
              "scale": np.ones((V, 1), dtype=np.float16), "w": np.zeros((H, H), dtype=np.float16),
              "axis": np.zeros((), dtype=np.int64)}
    if not tied:
        consts["head"] = np.zeros((V, H), dtype=np.float16)
    types = {"uint8": "u8", "float16": "f16", "int64": "i64"}
    layers, blob, ids, offsets = [], b"", {}, {}
    for name, a in consts.items():
        ids[name], offsets[name] = len(layers), len(blob)
        shape = ", ".join(str(d) for d in a.shape)
        layers.append(f'<layer id="{len(layers)}" name="{name}" type="Const" version="opset1">'
                      f'<data element_type="{types[a.dtype.name]}" shape="{shape}" offset="{len(blob)}" '
                      f'size="{a.nbytes}"/><output><port id="0"/></output></layer>')
        blob += a.tobytes()
    # A second Const over the bytes of "w", as OpenVINO writes for shared constants.
    ids["w_again"] = len(layers)
    layers.append(f'<layer id="{len(layers)}" name="w_again" type="Const" version="opset1"><data element_type="f16" '
                  f'shape="{H}, {H}" offset="{offsets["w"]}" size="{consts["w"].nbytes}"/></layer>')
    edges = []

    def op(kind: str, *inputs: int) -> int:
        lid = len(layers)
        layers.append(f'<layer id="{lid}" name="{kind}{lid}" type="{kind}" version="opset1"/>')
        edges.extend(f'<edge from-layer="{i}" from-port="0" to-layer="{lid}" to-port="{p}"/>'
                     for p, i in enumerate(inputs))
        return lid

    ids_param = op("Parameter")
    table = op("Multiply", op("Subtract", op("Convert", ids["embed"]), op("Convert", ids["zp"])), ids["scale"])
    x = op("Gather", table, ids_param, ids["axis"])
    y = op("MatMul", op("MatMul", x, ids["w"]), ids["w_again"])
    op("Result", op("MatMul", y, table if tied else ids["head"]))
    xml = (f'<?xml version="1.0"?><net name="m" version="11"><layers>{"".join(layers)}</layers>'
           f'<edges>{"".join(edges)}</edges></net>')
    (directory / "openvino_model.xml").write_text(xml)
    (directory / "openvino_model.bin").write_bytes(blob)
    _config(directory, tied=tied)
    return {k: a.nbytes for k, a in consts.items()}


def test_openvino_tied_table_feeds_gather_and_head(tmp_path):
    b = _openvino(tmp_path, tied=True)
    r = decodebytes.per_token(tmp_path, depth=2)
    table = b["embed"] + b["zp"] + b["scale"]
    assert r["tied"] is True and r["embedding_table"] == table == r["output_projection"]
    assert r["kv_dtype_bytes"] == 1  # the CPU plugin's u8 cache
    assert r["weights"] == table + b["w"] + b["axis"]  # the shared "w" bytes once
    assert r["bytes"] == r["weights"] + table // V + 2 * KV_ELEMENTS


def test_openvino_untied_reads_one_row_of_the_compressed_table(tmp_path):
    b = _openvino(tmp_path, tied=False)
    r = decodebytes.per_token(tmp_path)
    assert r["tied"] is False and r["output_projection"] == b["head"]
    assert r["embedding_row"] == H + 1 + 2  # u8 row, its zero point and its f16 scale
    assert r["bytes"] == b["head"] + b["w"] + b["axis"] + H + 3
