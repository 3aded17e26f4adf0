"""A language model as static graphs for the HTP: the pipeline file and the host loop.

The HTP takes fixed shapes only, so a causal LM becomes two graphs over one
key/value cache of a fixed ``context``: ``prefill`` takes ``chunk`` new tokens,
``decode`` one. Each graph gets the cache as inputs and returns only the new
tokens' keys and values; the host owns the cache (writes those rows in), the
attention mask (past rows that are filled, causal within the new tokens) and the
rotary angles (a table made by transformers at export, so every RoPE variant
is the checkpoint's own). Nothing in the graphs depends on the position, so
they need no control flow and no dynamic shapes.

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

    def to_json(self) -> dict[str, Any]:
        return {"schema": SCHEMA, **attrs.asdict(self, recurse=False),
                "graphs": dict(self.graphs), "eos_token_ids": list(self.eos_token_ids),
                "details": dict(self.details)}

    def write(self, directory: Path) -> None:
        (Path(directory) / SPEC_FILE).write_text(json.dumps(self.to_json(), indent=2) + "\n")

    def evolve(self, **changes: Any) -> Spec:
        return attrs.evolve(self, **changes)

    def steps(self) -> dict[str, int]:
        """Tokens each graph takes per run."""
        return {"prefill": self.chunk, "decode": 1}


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
    for name in GRAPHS:
        if not (Path(directory) / spec.graphs[name]).is_file():
            raise UserError(f"{directory} lacks its {name} graph {spec.graphs[name]}; "
                            f"convert the model again")
    return spec


def cache_names(layers: int) -> list[str]:
    """Graph input names of the cache, in order (keys then values, per layer)."""
    return [f"past_{kind}_{i}" for i in range(layers) for kind in ("key", "value")]


def new_names(layers: int) -> list[str]:
    """Graph output names of the new rows, in the order of :func:`cache_names`."""
    return [f"new_{kind}_{i}" for i in range(layers) for kind in ("key", "value")]


def read_rope(directory: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(Path(directory) / ROPE_FILE) as z:
        return z["cos"].astype(np.float32), z["sin"].astype(np.float32)


def session_run(session: Any) -> Run:
    """An onnxruntime session as a :data:`Run`."""
    names = [o.name for o in session.get_outputs()]
    return lambda feed: dict(zip(names, session.run(None, feed), strict=True))


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
            for name in GRAPHS}


class Pipeline:
    """The host side: the cache, masks and angles around two graph runs.

    ``runs`` maps ``prefill``/``decode`` to a function running that graph.
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
        out = self.runs[graph](self.feed(graph, ids))
        n, p = len(ids), self.position
        for past, new in zip(cache_names(self.spec.layers), new_names(self.spec.layers), strict=True):
            self.cache[past][:, :, p:p + n] = out[new][:, :, :n]
        self.position += n
        return np.asarray(out["logits"])[0, :n]

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
