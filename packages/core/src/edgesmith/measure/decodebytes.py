"""Bytes of memory one decoded token reads, counted from an artifact's tensor table.

Decoding one token multiplies the hidden state by every weight matrix once,
so it reads every weight tensor once at its stored size, the output
projection included. Tables indexed by the token (the input embedding) or
by its position (rotary caches, learned positions) give one row each, not
the table. Attention then reads the KV cache of the tokens before it:
``kv_bytes_per_token`` x depth, capped per layer at a sliding window when
the config declares one (``layer_types`` or ``sliding_window_pattern``).

A tied embedding (one vocabulary-sized matrix serving input and output) is
read in full once as the output projection; a file that stores a second copy
for the output (ONNX exports do) has that copy read in full and the input
table one row per token. Tensor tables come from headers and metadata only,
with the standard library and numpy: GGUF's tensor table, safetensors
headers, the ONNX protobuf (walked here by hand, no onnx package) and the
OpenVINO IR's XML. Where the graph is known (ONNX, including QNN's QDQ
models, and OpenVINO) a tensor's role follows from the ops that consume it;
elsewhere from its name. A QNN context binary hides its weights: no count.
"""

from __future__ import annotations

import json
import math
import mmap
import re
import struct
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserError
from . import onnxwire

METHOD = ("every tensor an op reads counted once at its stored size, the output projection included; "
          "token- and position-indexed tables one row each; plus the KV cache at `depth` tokens")

#: Names of the input embedding, the output projection and other row-indexed tables,
#: for formats without a graph (and for reporting which tensors are which).
INPUT_NAMES = re.compile(r"(^|[./])(embed_tokens|token_embd|tok_embeddings|word_embeddings|wte|embed_in)([./]|$)")
OUTPUT_NAMES = re.compile(r"(^|[./])(lm_head|embed_out)([./]|$)|^output\.(weight|bias|scales|biases)$")
ROW_TABLE_NAMES = re.compile(r"(^|[./])(wpe|embed_positions|position_embd|position_embeddings|"
                             r"embed_tokens_per_layer|per_layer_token_embd|token_type_embeddings)([./]|$)")


@dataclass(eq=False)  # compared by identity: two tensors can look alike
class Tensor:
    name: str
    #: Row-major; ``shape[0]`` is the row a lookup selects.
    shape: tuple[int, ...]
    nbytes: int
    #: "full", "lookup" (one row per token), "both" (a tied matrix), "unused"; None: decide by name.
    use: str | None = None
    #: The graph values that hold these bytes (several when an exporter shares one buffer).
    names: set[str] = field(default_factory=set)


@dataclass
class Dims:
    vocab: int | None = None
    layers: int | None = None
    #: Per layer.
    kv_heads: list[int] | None = None
    key_dim: int | None = None
    value_dim: int | None = None
    #: Per layer: the sliding window, or None for full attention.
    windows: list[int | None] | None = None
    tied: bool | None = None


@dataclass
class Inventory:
    tensors: list[Tensor]
    source: str
    dims: Dims
    kv_dtype_bytes: float | None
    kv_dtype: str
    notes: list[str] = field(default_factory=list)
    #: Bytes as stored, when the counts above are of a wider in-memory type.
    stored_bytes: int | None = None
    #: The loader ties the embeddings when the config says so (transformers, mlx-lm), so a
    #: stored output copy is never read.
    ties_by_config: bool = False


class _Unlisted(Exception):
    """The artifact's tensors cannot be listed; the message says why."""


def per_token(path: Path, depth: int = 0, *, kv_dtype_bytes: float | None = None) -> dict[str, Any]:
    """Bytes one decoded token reads from ``path`` with ``depth`` tokens already in the KV cache.

    ``kv_dtype_bytes`` overrides the per-format default element size of the
    KV cache (for a backend option such as llama.cpp's ``kv_cache=f32``).
    When the tensors cannot be listed every count is None and ``reason``
    says why; the caller falls back to file sizes.
    """
    from ..formats import detect

    if depth < 0:
        raise UserError(f"depth {depth} is negative; give the number of tokens already in the KV cache (0 or more)")
    art = detect(Path(path))
    readers = {"gguf": _gguf, "hf": _safetensors, "mlx": _safetensors, "onnx": _onnx, "openvino": _openvino}
    try:
        if art.format not in readers:
            raise _Unlisted("a QNN context binary: its weights are compiled into an opaque blob")
        inv = readers[art.format](art)
    except _Unlisted as e:
        return _unknown(str(e), art.format)
    except (UserError, OSError, ValueError, KeyError, struct.error, ET.ParseError) as e:
        return _unknown(f"its tensor table could not be read ({e})", art.format)
    if kv_dtype_bytes is not None:
        inv.kv_dtype_bytes, inv.kv_dtype = kv_dtype_bytes, f"{kv_dtype_bytes} bytes (given)"
    return _count(inv, depth)


# -- counting -------------------------------------------------------------------


def _count(inv: Inventory, depth: int) -> dict[str, Any]:
    d, notes = inv.dims, list(inv.notes)
    tensors = inv.tensors
    if any(t.use is None for t in tensors):
        _uses_by_name(tensors, d, notes, inv.ties_by_config)
    full = [t for t in tensors if t.use in ("full", "both")]
    lookups = [t for t in tensors if t.use in ("lookup", "both")]
    embedding = _embedding(lookups, d.vocab)
    others = [t for t in lookups if t not in embedding]
    output = [t for t in full if t.use == "both" or OUTPUT_NAMES.search(t.name) or _vocab_sized(t, d.vocab)]
    tied = any(t.use == "both" for t in embedding)
    if d.tied and embedding and not tied:
        notes.append("the checkpoint ties its embeddings but this file stores a separate output copy, "
                     "read in full; the input table counts one row")
    rows = _rows(embedding)
    other_rows = sum(_rows([t]) for t in others)
    kv_per_token, kv = _kv(d, inv.kv_dtype_bytes, depth)
    if kv_per_token is None:
        notes.append("KV cache not counted: the config does not give layers, KV heads and head size")
    weights = sum(t.nbytes for t in full)
    return {
        "bytes": weights + rows + other_rows + (kv or 0),
        "weights": weights,
        "embedding_table": sum(t.nbytes for t in embedding),
        "embedding_row": rows,
        "output_projection": sum(t.nbytes for t in output),
        "tied": tied,
        "other_tables": sum(t.nbytes for t in others),
        "other_rows": other_rows,
        "kv_cache": kv,
        "kv_bytes_per_token": kv_per_token,
        "kv_dtype_bytes": inv.kv_dtype_bytes,
        "kv_dtype": inv.kv_dtype,
        "depth": depth,
        "stored_bytes": inv.stored_bytes if inv.stored_bytes is not None else sum(t.nbytes for t in tensors),
        "tensors": len(tensors),
        "method": METHOD,
        "source": inv.source,
        "notes": notes,
        "reason": None,
    }


def _unknown(reason: str, fmt: str) -> dict[str, Any]:
    keys = ("bytes", "weights", "embedding_table", "embedding_row", "output_projection", "tied", "other_tables",
            "other_rows", "kv_cache", "kv_bytes_per_token", "kv_dtype_bytes", "kv_dtype", "depth",
            "stored_bytes", "tensors")
    return {**dict.fromkeys(keys), "method": METHOD, "source": fmt, "notes": [], "reason": reason}


def _vocab_sized(t: Tensor, vocab: int | None) -> bool:
    return bool(vocab and t.shape and (t.shape[0] == vocab or (len(t.shape) == 2 and t.shape[1] == vocab)))


def _embedding(lookups: list[Tensor], vocab: int | None) -> list[Tensor]:
    """The row-indexed tensors that make up the input embedding: those with a row per
    vocabulary entry, else those named like one, else the largest table (with its
    scales and zero points, which have as many rows)."""
    for pick in (lambda t: vocab and t.shape[:1] == (vocab,), lambda t: INPUT_NAMES.search(t.name)):
        found = [t for t in lookups if pick(t)]
        if found:
            return found
    if not lookups:
        return []
    rows = max(lookups, key=lambda t: t.nbytes).shape[:1]
    return [t for t in lookups if t.shape[:1] == rows]


def _rows(table: list[Tensor]) -> int:
    """Bytes of one row of a table split over several tensors (quantized data, scales,
    zero points); a side tensor that is not row-indexed (a scalar scale) is read whole."""
    if not table:
        return 0
    n = max(t.shape[0] if t.shape else 1 for t in table)
    return sum(math.ceil(t.nbytes / n) if t.shape and t.shape[0] == n else t.nbytes for t in table)


def _uses_by_name(tensors: list[Tensor], d: Dims, notes: list[str], ties_by_config: bool) -> None:
    """Roles from tensor names, for formats that carry no graph (GGUF, safetensors)."""
    inputs = [t for t in tensors if INPUT_NAMES.search(t.name)]
    outputs = [t for t in tensors if OUTPUT_NAMES.search(t.name)]
    if not inputs and d.vocab:  # unnamed: 2-D matrices with a vocabulary-sized side
        inputs = [t for t in tensors if len(t.shape) == 2 and _vocab_sized(t, d.vocab) and t not in outputs]
        if len(inputs) > 1:
            notes.append("several vocabulary-sized matrices and no names to tell them apart: all read in full")
            inputs = []
    loader_ties = ties_by_config and d.tied is True and bool(inputs) and bool(outputs)
    for t in tensors:
        if t.use is not None:
            continue
        if t in inputs:
            t.use = "both" if not outputs or loader_ties else "lookup"
        elif t in outputs and loader_ties:
            t.use = "unused"
        elif ROW_TABLE_NAMES.search(t.name):
            t.use = "lookup"
        else:
            t.use = "full"
    if loader_ties:
        notes.append("the config ties the embeddings, so the stored output copy is not read")


def _kv(d: Dims, elem: float | None, depth: int) -> tuple[int | None, int | None]:
    if not (d.layers and d.kv_heads and d.key_dim and elem):
        return None, (0 if depth == 0 else None)
    per_layer = [h * (d.key_dim + (d.value_dim or d.key_dim)) * elem for h in d.kv_heads]
    windows = d.windows if d.windows and len(d.windows) == len(per_layer) else [None] * len(per_layer)
    kv = sum(b * (depth if w is None else min(depth, w)) for b, w in zip(per_layer, windows, strict=True))
    return round(sum(per_layer)), round(kv)


# -- configs --------------------------------------------------------------------


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _hf_dims(directory: Path) -> Dims:
    """Dimensions from a Hugging Face style config.json (its text_config for multimodal models)."""
    top = _json(directory / "config.json")
    c = {**top, **(top.get("text_config") or {})}
    heads = c.get("num_attention_heads") or c.get("n_head")
    hidden = c.get("hidden_size") or c.get("n_embd") or c.get("d_model")
    layers = c.get("num_hidden_layers") or c.get("n_layer")
    kv_heads = c.get("num_key_value_heads") or heads
    head_dim = c.get("head_dim") or (hidden // heads if hidden and heads else None)
    return Dims(vocab=c.get("vocab_size"), layers=layers, kv_heads=[kv_heads] * layers if layers and kv_heads else None,
                key_dim=head_dim, value_dim=head_dim, windows=_windows(c, layers),
                tied=c.get("tie_word_embeddings", top.get("tie_word_embeddings")) if top else None)


def _windows(c: dict[str, Any], layers: int | None) -> list[int | None] | None:
    """Per-layer sliding windows: ``layer_types`` (transformers >= 4.53) or Gemma's
    ``sliding_window_pattern`` (every n-th layer global). A bare ``sliding_window``
    is not trusted (Qwen2 sets one it does not use)."""
    window = c.get("sliding_window")
    if not window or not layers:
        return None
    types = c.get("layer_types")
    if isinstance(types, list) and len(types) == layers:
        return [window if t == "sliding_attention" else None for t in types]
    pattern = c.get("sliding_window_pattern")
    if isinstance(pattern, int) and pattern > 0:
        return [None if (i + 1) % pattern == 0 else window for i in range(layers)]
    return None


#: safetensors float types -> bytes.
FLOAT_BYTES = {"F32": 4, "F16": 2, "BF16": 2}


def _activation_dtype(dtypes: list[str]) -> str:
    """The most common float type among ``dtypes`` (F16 when there is none)."""
    floats = [t for t in dtypes if t in FLOAT_BYTES]
    return max(set(floats), key=floats.count) if floats else "F16"


# -- GGUF -----------------------------------------------------------------------


def _gguf(art: Any) -> Inventory:
    from .. import gguffile

    lay = gguffile.read(art.main_file)
    # GGUF lists dimensions fastest first; reversed, shape[0] is the row index.
    tensors = [Tensor(name, tuple(reversed(dims)), gguffile._tensor_nbytes(dims, ggml_type))
               for name, dims, ggml_type, _ in lay.tensors]
    v = lay.values
    arch = v.get("general.architecture", "")

    def key(k: str) -> Any:
        return v.get(f"{arch}.{k}")

    layers, heads = key("block_count"), key("attention.head_count")
    kv_heads = key("attention.head_count_kv") or heads
    if isinstance(kv_heads, int) and layers:
        kv_heads = [kv_heads] * layers
    head = heads[0] if isinstance(heads, list) else heads
    width = key("embedding_length")
    key_dim = key("attention.key_length") or (width // head if width and head else None)
    vocab = key("vocab_size") or len(v.get("tokenizer.ggml.tokens") or []) or None
    dims = Dims(vocab=vocab, layers=layers, kv_heads=kv_heads or None, key_dim=key_dim,
                value_dim=key("attention.value_length") or key_dim)
    notes = ["sliding windows are not applied to a GGUF (llama.cpp decides them per architecture)"] \
        if key("attention.sliding_window") else []
    return Inventory(tensors, f"{art.main_file.name}: GGUF tensor table", dims, 2,
                     "f16 (llama.cpp's default cache type)", notes)


# -- safetensors (Hugging Face, MLX) --------------------------------------------


def _safetensors(art: Any) -> Inventory:
    from ..weights import read_header

    d = art.directory
    index = _json(d / "model.safetensors.index.json").get("weight_map")
    files = sorted({d / f for f in index.values()}) if isinstance(index, dict) else sorted(d.glob("*.safetensors"))
    if not files:
        raise _Unlisted("no safetensors files (pickle checkpoints are not read)")
    tensors, dtypes, seen = [], [], set()
    for f in files:
        header = read_header(f)[0]
        for name, t in header.items():
            if name == "__metadata__" or name in seen:
                continue
            seen.add(name)
            start, end = t["data_offsets"]
            tensors.append(Tensor(name, tuple(t["shape"]), end - start))
            if len(t["shape"]) == 1:  # norms keep the model's float type when matrices are quantized
                dtypes.append(t["dtype"])
    source = f"{', '.join(f.name for f in files)}: safetensors headers"
    kv = _activation_dtype(dtypes)
    inv = Inventory(tensors, source, _hf_dims(d), FLOAT_BYTES[kv], f"{kv.lower()} (the model's float type)",
                    ties_by_config=True)
    if art.format == "hf":
        # The transformers backend loads and computes in float32 unless told otherwise (-O dtype).
        inv.stored_bytes = sum(t.nbytes for t in tensors)
        for t in tensors:
            t.nbytes = 4 * math.prod(t.shape)
        inv.kv_dtype_bytes, inv.kv_dtype = 4, "f32 (the transformers backend's default dtype)"
        inv.notes.append("weights counted as float32, as the transformers backend holds them by default")
    return inv


# -- ONNX -----------------------------------------------------------------------

#: (op type, input index) pairs that read one row of a constant per token.
ONNX_ROW_INPUTS = {("Gather", 0), ("GatherBlockQuantized", 0), ("GatherBlockQuantized", 2),
                   ("GatherBlockQuantized", 3), ("GroupQueryAttention", 7), ("GroupQueryAttention", 8)}


def _onnx(art: Any) -> Inventory:
    file = art.main_file
    with open(file, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        buf = memoryview(mm)
        try:
            consts, nodes, inputs, notes = onnxwire.read_graph(buf)
        finally:
            buf.release()
    tensors = _dedup(consts)
    _uses_by_graph(tensors, nodes, _onnx_row_input)
    genai = _json(file.parent / "genai_config.json").get("model") or {}
    dims = _hf_dims(file.parent)
    dec = genai.get("decoder") or {}
    if dec:
        layers = dec.get("num_hidden_layers") or dims.layers
        dims.vocab = genai.get("vocab_size") or dims.vocab
        dims.layers = layers
        kvh = dec.get("num_key_value_heads") or dec.get("num_attention_heads")
        dims.kv_heads = [kvh] * layers if kvh and layers else dims.kv_heads
        dims.key_dim = dims.value_dim = dec.get("head_size") or dims.key_dim
    past = (dec.get("inputs") or {}).get("past_key_names", "past_key_values.%d.key").replace("%d", "0")
    elem = inputs.get(past) or next((t for n, t in inputs.items() if "past" in n), None)
    kv_bytes = onnxwire.ONNX_BITS[elem] / 8 if elem in onnxwire.ONNX_BITS else None
    kv_dtype = f"ONNX type {elem} of the graph's past key/value inputs" if kv_bytes else "unknown"
    if any(n.op in ("If", "Loop", "Scan") for n in nodes):
        notes.append("If/Loop/Scan subgraphs are not walked: constants only they use count as unused")
    files = " + ".join([file.name, *sorted({t[3] for t in consts if t[3]})])
    source = f"{files}: {len(tensors)} ONNX initializers and Constant values (protobuf read directly)"
    return Inventory(tensors, source, dims, kv_bytes, kv_dtype, notes)


def _onnx_row_input(node: onnxwire.Node, index: int) -> bool:
    if node.op == "RotaryEmbedding":  # cos/sin caches; the two domains order the inputs differently
        return index in ((2, 3) if node.domain == "com.microsoft" else (1, 2))
    return (node.op, index) in ONNX_ROW_INPUTS


def _dedup(consts: list[tuple[str, tuple[int, ...], int, str, Any]]) -> list[Tensor]:
    """Tensors, with values that share stored bytes kept once under all their names."""
    out: list[Tensor] = []
    by_key: dict[Any, Tensor] = {}
    for name, dims, nbytes, _, key in consts:
        t = Tensor(name, dims, nbytes, names={name})
        if key is not None and key in by_key:
            by_key[key].names.add(name)
            continue
        if key is not None:
            by_key[key] = t
        out.append(t)
    return out


#: Ops whose output is state or a graph input, never a folded constant.
STATEFUL = {"ReadValue", "Assign", "Parameter", "Result"}


def _uses_by_graph(tensors: list[Tensor], nodes: list[onnxwire.Node], row_input: Any) -> None:
    """Each tensor's use: follow it through the ops whose inputs are all constant
    (dequantization, casts, transposes: folded before or at load) to the first op that
    also takes activations; a row input of a gather-like op reads one row."""
    consumers: dict[str, list[tuple[onnxwire.Node, int]]] = {}
    for node in nodes:
        for i, name in enumerate(node.inputs):
            if name:
                consumers.setdefault(name, []).append((node, i))
    const = {n for t in tensors for n in t.names}
    folded: set[int] = set()
    todo = list(const)
    while todo:
        for node, _ in consumers.get(todo.pop(), []):
            if (id(node) not in folded and node.op not in STATEFUL and node.inputs
                    and all(not i or i in const for i in node.inputs)):
                folded.add(id(node))
                new = [o for o in node.outputs if o and o not in const]
                const.update(new)
                todo.extend(new)
    for t in tensors:
        kinds, seen = set(), set()
        stack = list(t.names)
        while stack:
            for node, i in consumers.get(stack.pop(), []):
                if id(node) in folded:
                    if id(node) not in seen:
                        seen.add(id(node))
                        stack.extend(o for o in node.outputs if o)
                else:
                    kinds.add("lookup" if row_input(node, i) else "full")
        t.use = "both" if len(kinds) == 2 else (kinds.pop() if kinds else "unused")


# -- OpenVINO IR ------------------------------------------------------------------


def _openvino(art: Any) -> Inventory:
    xml = art.main_file
    root = ET.parse(xml).getroot()
    layers, edges = root.find("layers"), root.find("edges")
    if layers is None or edges is None:
        raise ValueError("no layers or edges in the IR")
    nodes: dict[str, onnxwire.Node] = {}
    consts: dict[tuple[int, int], Tensor] = {}  # one tensor per span of the .bin
    for layer in layers:
        lid, kind = layer.get("id", ""), layer.get("type", "")
        data = layer.find("data")
        if kind == "Const" and data is not None:
            shape = tuple(int(x) for x in (data.get("shape") or "").split(",") if x.strip())
            span = (int(data.get("offset", 0)), int(data.get("size", 0)))
            t = consts.setdefault(span, Tensor(layer.get("name", lid), shape, span[1]))
            t.names.add(f"{lid}:out")
        else:
            nodes[lid] = onnxwire.Node(kind, [], [f"{lid}:out"])
    ports: dict[str, dict[int, str]] = {}
    for e in edges:
        src, dst = e.get("from-layer", ""), e.get("to-layer", "")
        ports.setdefault(dst, {})[int(e.get("to-port", 0))] = f"{src}:out"
    for lid, node in nodes.items():
        node.inputs = [ports[lid][p] for p in sorted(ports.get(lid, {}))]
        if not node.inputs:
            node.inputs = [f"{lid}:source"]  # Parameter, ReadValue: activations, never constant
    tensors = list(consts.values())
    _uses_by_graph(tensors, list(nodes.values()), lambda node, i: node.op == "Gather" and i == 0)
    return Inventory(tensors, f"{xml.name} + {xml.with_suffix('.bin').name}: OpenVINO IR Const layers",
                     _hf_dims(xml.parent), 1, "u8 (the CPU plugin's default KV_CACHE_PRECISION; its per-head "
                     "scales are not counted, GPUs keep f16)")
