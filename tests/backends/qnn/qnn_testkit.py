"""Test kit for the QNN backend tests: constants, cosine, and tiny models.

A tiny BERT-like encoder written directly with onnx.helper (random weights).

Built on the spot, in well under a second, without torch: embeddings (word +
position) -> LayerNorm -> N x [multi-head self-attention with an additive
padding mask, residual + LayerNorm, Erf-GELU feed-forward, residual +
LayerNorm]. Inputs ``input_ids``/``attention_mask`` are [batch, sequence]
with symbolic dimensions, as an exporter writes them.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

SEQ = 16
SHAPE = {"shape": f"input_ids:1x{SEQ}"}
#: The language-model pipelines' shape (conftest.llm_pipeline): small for the simulator,
#: long enough for the fidelity kit's 128 scored positions.
LLM_SHAPE = {"context": "160", "chunk": "32"}
TEXTS = ("The morning train was late again.", "a b")


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def build_encoder(dest: Path, *, vocab: int = 512, hidden: int = 64, heads: int = 4,
                  ffn: int = 128, layers: int = 2, max_pos: int = 128, seed: int = 0,
                  causal_seq: int | None = None) -> Path:
    """``causal_seq=N`` builds a fixed-length causal LM instead: inputs
    [1, N], a causal mask and an LM head giving ``logits`` [1, N, vocab]."""
    import onnx
    from onnx import TensorProto as T
    from onnx import helper as h
    from onnx import numpy_helper as nh

    rng = np.random.default_rng(seed)
    inits: list = []
    nodes: list = []

    def const(name: str, arr: np.ndarray) -> str:
        inits.append(nh.from_array(np.asarray(arr), name))
        return name

    def w(name: str, *shape: int, scale: float = 0.08) -> str:
        return const(name, (rng.standard_normal(shape) * scale).astype(np.float32))

    def node(op: str, ins: list[str], out: str, **attrs) -> str:
        nodes.append(h.make_node(op, ins, [out], name=out, **attrs))
        return out

    def linear(x: str, name: str, n_in: int, n_out: int) -> str:
        m = node("MatMul", [x, w(f"{name}.weight", n_in, n_out)], f"{name}.mm")
        return node("Add", [m, w(f"{name}.bias", n_out, scale=0.02)], f"{name}.out")

    def layernorm(x: str, name: str) -> str:
        g = const(f"{name}.gamma", (1 + rng.standard_normal(hidden) * 0.05).astype(np.float32))
        b = const(f"{name}.beta", (rng.standard_normal(hidden) * 0.02).astype(np.float32))
        return node("LayerNormalization", [x, g, b], f"{name}.out", axis=-1, epsilon=1e-12)

    d = hidden // heads
    const("one", np.array(1.0, np.float32))
    const("half", np.array(0.5, np.float32))
    const("sqrt2", np.array(math.sqrt(2), np.float32))
    const("mask_neg", np.array(-100.0, np.float32))
    const("scale", np.array(1 / math.sqrt(d), np.float32))
    const("split_heads", np.array([0, 0, heads, d], np.int64))
    const("merge_heads", np.array([0, 0, hidden], np.int64))
    const("zero1", np.array([0], np.int64))
    const("one1", np.array([1], np.int64))
    const("two1", np.array([2], np.int64))
    const("axes12", np.array([1, 2], np.int64))

    # Embeddings: word + position (positions sliced to the sequence length).
    word = node("Gather", [w("embeddings.word", vocab, hidden), "input_ids"], "emb.word")
    shape = node("Shape", ["input_ids"], "ids.shape")
    seq = node("Slice", [shape, "one1", "two1"], "ids.seq")
    pos = node("Slice", [w("embeddings.position", max_pos, hidden), "zero1", seq, "zero1"], "emb.pos")
    x = layernorm(node("Add", [word, pos], "emb.sum"), "emb.ln")

    # Additive mask: 0 where attended, -100 where padded ([b, 1, 1, s]).
    m = node("Cast", ["attention_mask"], "mask.f", to=T.FLOAT)
    m = node("Mul", [node("Sub", ["one", m], "mask.inv"), "mask_neg"], "mask.add")
    mask = node("Unsqueeze", [m, "axes12"], "mask.4d")
    if causal_seq:
        tri = np.triu(np.full((causal_seq, causal_seq), -100.0, np.float32), k=1)[None, None]
        mask = node("Add", [mask, const("causal", tri)], "mask.causal")

    for i in range(layers):
        p = f"layer{i}"

        def heads_of(t: str, perm: list[int], name: str) -> str:
            r = node("Reshape", [t, "split_heads"], f"{name}.split")
            return node("Transpose", [r], f"{name}.heads", perm=perm)

        q = heads_of(linear(x, f"{p}.q", hidden, hidden), [0, 2, 1, 3], f"{p}.q")
        k = heads_of(linear(x, f"{p}.k", hidden, hidden), [0, 2, 3, 1], f"{p}.k")
        v = heads_of(linear(x, f"{p}.v", hidden, hidden), [0, 2, 1, 3], f"{p}.v")
        s = node("Mul", [node("MatMul", [q, k], f"{p}.qk"), "scale"], f"{p}.scores")
        s = node("Add", [s, mask], f"{p}.masked")
        a = node("Softmax", [s], f"{p}.probs", axis=-1)
        c = node("MatMul", [a, v], f"{p}.ctx")
        c = node("Transpose", [c], f"{p}.ctx.t", perm=[0, 2, 1, 3])
        c = node("Reshape", [c, "merge_heads"], f"{p}.ctx.merged")
        o = linear(c, f"{p}.o", hidden, hidden)
        x = layernorm(node("Add", [x, o], f"{p}.res1"), f"{p}.ln1")
        f = linear(x, f"{p}.ffn_in", hidden, ffn)
        # GELU as torch.onnx exports it: x * (1 + erf(x / sqrt(2))) * 0.5.
        erf = node("Erf", [node("Div", [f, "sqrt2"], f"{p}.gelu.div")], f"{p}.gelu.erf")
        g = node("Mul", [f, node("Add", [erf, "one"], f"{p}.gelu.add")], f"{p}.gelu.mul")
        g = node("Mul", [g, "half"], f"{p}.gelu")
        f = linear(g, f"{p}.ffn_out", ffn, hidden)
        x = layernorm(node("Add", [x, f], f"{p}.res2"), f"{p}.ln2")
    dims = [1, causal_seq] if causal_seq else ["batch", "sequence"]
    if causal_seq:
        node("MatMul", [x, w("lm_head", hidden, vocab, scale=0.3)], "logits")
        out = h.make_tensor_value_info("logits", T.FLOAT, [*dims, vocab])
    else:
        nodes.append(h.make_node("Identity", [x], ["last_hidden_state"], name="output"))
        out = h.make_tensor_value_info("last_hidden_state", T.FLOAT, [*dims, hidden])
    graph = h.make_graph(
        nodes, "tiny_causal_lm" if causal_seq else "tiny_encoder",
        [h.make_tensor_value_info("input_ids", T.INT64, dims),
         h.make_tensor_value_info("attention_mask", T.INT64, dims)],
        [out], inits,
    )
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)], producer_name="edgesmith-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dest / "model.onnx"))
    return dest


def build_unsupported(dest: Path) -> Path:
    """A float graph with an op the QNN HTP backend does not implement."""
    import onnx
    from onnx import TensorProto as T
    from onnx import helper as h

    nodes = [h.make_node("Relu", ["x"], ["r"], name="relu"),
             h.make_node("Det", ["r"], ["y"], name="det")]
    graph = h.make_graph(nodes, "unsupported",
                         [h.make_tensor_value_info("x", T.FLOAT, [2, 4, 4])],
                         [h.make_tensor_value_info("y", T.FLOAT, [2])])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    model.ir_version = 8
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dest / "model.onnx"))
    return dest


def export_hf_bert(dest: Path, *, seed: int = 0) -> Path:
    """A tiny random-init Hugging Face BertModel built from a config and exported
    with torch.onnx (needs torch + transformers; no hub access)."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=512, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=128, max_position_embeddings=128, type_vocab_size=2)
    config._attn_implementation = "eager"
    bert = BertModel(config).eval()

    class Encoder(torch.nn.Module):
        # Keyword call: BertModel.forward's positional order differs across releases.
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask):
            # The additive mask is built here rather than by transformers: its
            # mask helpers do not trace with torch.onnx in every 5.x release.
            bias = (1.0 - attention_mask[:, None, None, :].float()) * -10000.0
            hidden = self.bert.embeddings(input_ids=input_ids)
            return self.bert.encoder(hidden, attention_mask=bias).last_hidden_state

    model = Encoder().eval()
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    ids = torch.randint(0, 512, (1, 16))
    mask = torch.ones_like(ids)
    axes = {0: "batch", 1: "sequence"}
    with torch.no_grad():
        torch.onnx.export(
            model, (ids, mask), str(dest / "model.onnx"),
            input_names=["input_ids", "attention_mask"],
            output_names=["last_hidden_state"],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, "last_hidden_state": axes},
            opset_version=17, dynamo=False,
        )
    return dest
