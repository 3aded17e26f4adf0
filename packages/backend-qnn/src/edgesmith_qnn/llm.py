"""A language model as static graphs for the HTP: the pipeline file and the host loop.

The HTP takes fixed shapes only, so a causal LM becomes two graphs over one
key/value cache of a fixed ``context``: ``prefill`` takes ``chunk`` new tokens,
``decode`` one. Each graph gets the cache as inputs and returns only the new
tokens' keys and values; the host owns the cache (writes those rows in), the
attention mask (past rows that are filled, causal within the new tokens) and the
rotary angles (a table made by transformers at export, so every RoPE variant
is the checkpoint's own). Nothing in the graphs depends on the position, so
they need no control flow and no dynamic shapes.

A model too big for one context binary is split by layers (``parts``): each
step's graph becomes ``parts`` graphs run in turn, the first from the token ids,
the others from the hidden state the one before returns, each with the cache
rows of its own layers.

``llm.json`` beside the graphs says how they fit together; :class:`Pipeline`
is that file's loop, shared by the runner, calibration and the tests.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from edgesmith.errors import UserError

from .options import GRAPHS

SPEC_FILE = "llm.json"
SCHEMA = "edgesmith.qnn-llm/1"
ROPE_FILE = "rope.npz"

#: A graph's run: feed -> outputs by name.
Run = Callable[[dict[str, np.ndarray]], Mapping[str, np.ndarray]]


@attrs.frozen
class Spec:
    """What ``llm.json`` says: the model's cache geometry and the two graphs."""

    model_type: str
    vocab_size: int
    layers: int
    kv_heads: int
    head_dim: int
    context: int
    chunk: int
    mask_value: float
    graphs: Mapping[str, str]
    eos_token_ids: tuple[int, ...] = ()
    #: float (as exported), qdq (quantized), context (compiled to context binaries)
    stage: str = "float"
    details: Mapping[str, Any] = attrs.field(factory=dict)
    #: graphs per step, split by layers (1: prefill and decode are one graph each)
    parts: int = 1
    #: width of the hidden state passed between parts
    hidden_size: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"schema": SCHEMA, **attrs.asdict(self, recurse=False),
                "graphs": dict(self.graphs), "eos_token_ids": list(self.eos_token_ids),
                "details": dict(self.details)}

    def write(self, directory: Path) -> None:
        (Path(directory) / SPEC_FILE).write_text(json.dumps(self.to_json(), indent=2) + "\n")

    def evolve(self, **changes: Any) -> Spec:
        return attrs.evolve(self, **changes)

    def steps(self) -> dict[str, int]:
        """Tokens each step's graphs take per run."""
        return {"prefill": self.chunk, "decode": 1}

    def keys(self, step: str | None = None) -> list[str]:
        """Graph keys of ``graphs`` (of one step, in run order): ``prefill`` and
        ``decode``, or ``prefill.0``, ``prefill.1``, ... when split."""
        steps = [step] if step else list(GRAPHS)
        return [s if self.parts == 1 else f"{s}.{i}" for s in steps for i in range(self.parts)]

    def layer_range(self, part: int) -> range:
        """The layers of part ``part``: as even as the layer count allows."""
        n, k = self.layers, self.parts
        return range(part * n // k, (part + 1) * n // k)

    def inputs(self, key: str) -> list[str]:
        """Input names of graph ``key``, in order."""
        part = _part(key)
        first = "input_ids" if part == 0 else "hidden"
        return [first, "cos", "sin", "attention_mask", *cache_names(self.layer_range(part))]

    def outputs(self, key: str) -> list[str]:
        """Output names of graph ``key``: logits (last part) or the hidden state, then new rows."""
        part = _part(key)
        return ["logits" if part == self.parts - 1 else "hidden", *new_names(self.layer_range(part))]


def _part(key: str) -> int:
    """The part index of graph key ``decode.1`` (0 for an unsplit ``decode``)."""
    return int(key.split(".")[1]) if "." in key else 0


def is_pipeline(directory: Path) -> bool:
    return (Path(directory) / SPEC_FILE).is_file()


def read_spec(directory: Path) -> Spec:
    path = Path(directory) / SPEC_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {path} ({exc}); convert the model again with "
                        f"`edgesmith convert MODEL --to qnn`") from None
    if data.get("schema") != SCHEMA:
        raise UserError(f"{path} is not an edgesmith QNN language-model pipeline ({SCHEMA}); "
                        f"convert the model again with `edgesmith convert MODEL --to qnn`")
    fields = {f.name for f in attrs.fields(Spec)}
    data = {k: v for k, v in data.items() if k in fields}
    data["eos_token_ids"] = tuple(data.get("eos_token_ids") or ())
    spec = Spec(**data)
    for name in spec.keys():
        if not (Path(directory) / spec.graphs.get(name, f"<{name} missing>")).is_file():
            raise UserError(f"{directory} lacks its {name} graph {spec.graphs.get(name)}; "
                            f"convert the model again")
    return spec


def cache_names(layers: int | range) -> list[str]:
    """Graph input names of the cache of ``layers`` (a count, or a range of layer
    indices), in order: key then value, per layer."""
    return [f"past_{kind}_{i}" for i in _range(layers) for kind in ("key", "value")]


def new_names(layers: int | range) -> list[str]:
    """Graph output names of the new rows, in the order of :func:`cache_names`."""
    return [f"new_{kind}_{i}" for i in _range(layers) for kind in ("key", "value")]


def _range(layers: int | range) -> range:
    return layers if isinstance(layers, range) else range(layers)


def read_rope(directory: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(Path(directory) / ROPE_FILE) as z:
        return z["cos"].astype(np.float32), z["sin"].astype(np.float32)


def session_run(session: Any) -> Run:
    """An onnxruntime session as a :data:`Run`; it takes its own inputs from a larger feed."""
    names = [o.name for o in session.get_outputs()]
    wanted = [i.name for i in session.get_inputs()]
    return lambda feed: dict(zip(names, session.run(None, {k: feed[k] for k in wanted}), strict=True))


def cpu_runs(directory: Path, spec: Spec, threads: int | None = None) -> dict[str, Run]:
    """The float graphs on ONNX Runtime's CPU EP (the export check, calibration, and
    running a float pipeline)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = int(threads)
    return {name: session_run(ort.InferenceSession(str(Path(directory) / spec.graphs[name]), so,
                                                   providers=["CPUExecutionProvider"]))
            for name in spec.keys()}


class Pipeline:
    """The host side: the cache, masks and angles around two graph runs.

    ``runs`` maps each graph key (:meth:`Spec.keys`) to a function running that graph.
    :meth:`feed` lays ``ids`` (at most one step's tokens) at the current
    position; :meth:`step` runs it and keeps the new rows; :meth:`extend`
    takes any number of tokens in steps and returns their logits.
    """

    def __init__(self, spec: Spec, rope: tuple[np.ndarray, np.ndarray], runs: Mapping[str, Run]) -> None:
        self.spec = spec
        self.cos, self.sin = rope
        self.runs = runs
        self.position = 0
        shape = (1, spec.kv_heads, spec.context, spec.head_dim)
        self.cache = {name: np.zeros(shape, np.float32) for name in cache_names(spec.layers)}

    def reset(self) -> None:
        self.position = 0
        for a in self.cache.values():
            a[...] = 0.0

    def room(self) -> int:
        return self.spec.context - self.position

    def feed(self, graph: str, ids: Sequence[int]) -> dict[str, np.ndarray]:
        s = self.spec
        width = s.steps()[graph]
        n = len(ids)
        if not 0 < n <= width:
            raise ValueError(f"{graph} takes 1..{width} tokens, got {n}")
        if self.position + n > s.context:
            raise UserError(f"{self.position + n} tokens exceed the compiled context of {s.context}; "
                            f"convert with a longer -O context=N")
        p = self.position
        tokens = np.zeros((1, width), np.int32)
        tokens[0, :n] = ids
        # Padding rows take the angles of the last real position (any finite value does).
        pos = np.minimum(np.arange(p, p + width), s.context - 1)
        mask = np.full((1, 1, width, s.context + width), s.mask_value, np.float32)
        mask[0, 0, :, :p] = 0.0  # the filled cache rows
        tri = np.tril(np.ones((width, width), bool))
        mask[0, 0, :, s.context:][tri] = 0.0  # causal among the new tokens
        feed = {"input_ids": tokens, "cos": self.cos[pos][None], "sin": self.sin[pos][None],
                "attention_mask": mask}
        feed.update(self.cache)
        return feed

    def step(self, graph: str, ids: Sequence[int]) -> np.ndarray:
        """Logits [n, vocab] of ``ids`` (n tokens at the current position); the cache advances."""
        feed = self.feed(graph, ids)
        for key in self.spec.keys(graph):  # split: each part hands the next its hidden state
            feed.update(self.runs[key]({k: feed[k] for k in self.spec.inputs(key)}))
        n, p = len(ids), self.position
        for past, new in zip(cache_names(self.spec.layers), new_names(self.spec.layers), strict=True):
            self.cache[past][:, :, p:p + n] = feed[new][:, :, :n]
        self.position += n
        return np.asarray(feed["logits"])[0, :n]

    def extend(self, ids: Sequence[int]) -> np.ndarray:
        """Logits [len(ids), vocab]: full chunks through prefill, a last single token through decode."""
        ids = list(ids)
        rows = []
        for start in range(0, len(ids), self.spec.chunk):
            part = ids[start:start + self.spec.chunk]
            rows.append(self.step("decode" if len(part) == 1 else "prefill", part))
        return np.concatenate(rows, axis=0)

    def generate(self, prompt: Sequence[int], pick: Callable[[np.ndarray], int],
                 max_tokens: int, stop: set[int]) -> Iterator[int]:
        """Tokens after ``prompt`` (``pick(logits) -> id``), until ``stop``, ``max_tokens``
        or the end of the context."""
        self.reset()
        row = self.extend(prompt)[-1]
        for _ in range(max_tokens):
            token = pick(row)
            if token in stop:
                return
            yield token
            if self.room() < 1:
                return
            row = self.step("decode", [token])[0]
