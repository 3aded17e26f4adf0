"""Running QDQ / EPContext / float ONNX graphs on the QNN EP (HTP).

The core Runner is built around text generation. The graphs this backend
compiles for the NPU are mostly encoders and vision models, so the useful
call is :meth:`QnnRunner.infer` (named inputs in, named outputs out, timed);
``generate`` answers with a one-line UnsupportedError.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgesmith.errors import UnsupportedError, UserError
from edgesmith.runner import Runner, peak_rss_mb
from edgesmith.types import Context, RunRequest

from . import ep, graph


class QnnRunner(Runner):
    def __init__(self, path: Path, opts: Mapping[str, Any], threads: int | None = None):
        """``opts``: parsed :data:`edgesmith_qnn.options.LOAD_OPTIONS`."""
        self.path = path
        self.cpu_fallback = opts["cpu_fallback"]
        ep.require_float_target(path, graph.load(path, weights=False), opts)
        self.session = ep.session(path, opts, cpu_fallback=self.cpu_fallback, threads=threads)
        self.providers = self.session.get_providers()
        self.inputs = {i.name: (i.shape, i.type) for i in self.session.get_inputs()}
        self.outputs = [o.name for o in self.session.get_outputs()]
        tok = path.parent / "tokenizer.json"
        self._tokenizer = None
        if tok.is_file():
            from tokenizers import Tokenizer

            self._tokenizer = Tokenizer.from_file(str(tok))
        # A fixed-length causal LM (input_ids [1, S] -> logits [1, S, V]) can
        # score and generate by re-running the whole window; anything else
        # (encoders, vision) is inference only.
        self._lm_len = self._causal_window()
        self.context_length = self._lm_len
        #: Timings of the last :meth:`infer` call.
        self.last_timings: dict[str, float] = {}

    # -- non-generative use ------------------------------------------------------

    def infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the graph once on named inputs; returns named outputs."""
        feed = {}
        missing = [n for n in self.inputs if n not in inputs]
        extra = [n for n in inputs if n not in self.inputs]
        if missing or extra:
            raise UserError(f"inputs do not match the model: missing {missing or 'none'}, "
                            f"unexpected {extra or 'none'}; it takes {', '.join(self.inputs)}")
        for name, (shape, _type) in self.inputs.items():
            arr = np.asarray(inputs[name])
            if list(arr.shape) != list(shape):
                raise UserError(f"input {name!r} has shape {list(arr.shape)} but the compiled "
                                f"model takes {shape}; pad or reshape it to that shape")
            feed[name] = arr.astype(_NP_TYPES.get(_type, arr.dtype), copy=False)
        t0 = time.perf_counter()
        result = self.session.run(None, feed)
        dt = time.perf_counter() - t0
        self.last_timings = {"infer_s": dt, "peak_rss_mb": peak_rss_mb()}
        if self.load_s is not None:
            self.last_timings["load_s"] = self.load_s
        return dict(zip(self.outputs, result, strict=True))

    def encode(self, text: str) -> dict[str, np.ndarray]:
        """Inputs for ``text`` through the tokenizer, padded to the static length."""
        if self._tokenizer is None:
            raise UserError(f"no tokenizer.json beside {self.path.name}; pass arrays to infer()")
        from .calibration import encode_texts

        specs = {}
        for name, (shape, type_) in self.inputs.items():
            specs[name] = (tuple(shape), _NP_TYPES.get(type_, np.int64))
        return encode_texts(self.path.parent / "tokenizer.json", [text], specs)[0]

    # -- Runner primitives --------------------------------------------------------

    def tokenize(self, text: str, *, add_special: bool = True) -> list[int]:
        if self._tokenizer is None:
            raise UserError(f"no tokenizer.json beside {self.path.name}; this model takes arrays")
        return list(self._tokenizer.encode(text, add_special_tokens=add_special).ids)

    def detokenize(self, token_ids: Sequence[int]) -> str:
        if self._tokenizer is None:
            raise UserError(f"no tokenizer.json beside {self.path.name}; this model takes arrays")
        return self._tokenizer.decode(list(token_ids), skip_special_tokens=True)

    def stream_tokens(self, prompt_ids: list[int], request: RunRequest) -> Iterator[int]:
        if not self._lm_len:
            raise UnsupportedError(
                f"{self.path.name} is a fixed-shape graph with no logits output, not a text "
                f"generator; run it on inputs with edgesmith_qnn's Runner.infer(...)")
        rng = np.random.default_rng(request.seed)
        ids = list(prompt_ids)
        eos = self._eos_ids()
        for _ in range(request.max_tokens):
            if len(ids) >= self._lm_len:
                return
            row = self._window_logits(ids)[len(ids) - 1].astype(np.float64)
            tok = _pick(row, request, rng)
            if tok in eos:
                return
            ids.append(tok)
            yield tok

    def logprobs(self, token_ids: Sequence[int]) -> np.ndarray:
        if not self._lm_len:
            return super().logprobs(token_ids)
        ids = list(token_ids)
        if not 0 < len(ids) <= self._lm_len:
            raise UserError(f"{len(ids)} tokens do not fit the compiled window of {self._lm_len}; "
                            f"score shorter pieces or compile with a longer shape")
        logits = self._window_logits(ids)[: len(ids)].astype(np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        return logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))

    def _causal_window(self) -> int | None:
        shape = self.inputs.get("input_ids", (None,))[0]
        if "logits" not in self.outputs or not shape or len(shape) != 2 or shape[0] != 1:
            return None
        extra = set(self.inputs) - {"input_ids", "attention_mask", "position_ids"}
        return int(shape[1]) if isinstance(shape[1], int) and not extra else None

    def _window_logits(self, ids: list[int]) -> np.ndarray:
        """Logits [S, V] for ``ids`` right-padded to the window (causal: the
        padding after a position cannot change it)."""
        n, width = len(ids), self._lm_len
        feed = {"input_ids": np.array([ids + [0] * (width - n)], np.int64)}
        if "attention_mask" in self.inputs:
            feed["attention_mask"] = np.array([[1] * n + [0] * (width - n)], np.int64)
        if "position_ids" in self.inputs:
            feed["position_ids"] = np.arange(width, dtype=np.int64)[None]
        return self.infer(feed)["logits"][0]

    def _eos_ids(self) -> set[int]:
        if self._tokenizer is None:
            return set()
        names = ("</s>", "<|endoftext|>", "<|im_end|>", "<eos>", "[SEP]")
        return {i for i in (self._tokenizer.token_to_id(t) for t in names) if i is not None}

    def close(self) -> None:
        self.session = None


def _pick(logits: np.ndarray, request: RunRequest, rng: np.random.Generator) -> int:
    """Greedy at temperature 0, else top-k / top-p sampling."""
    if request.temperature <= 0:
        return int(np.argmax(logits))
    z = logits / request.temperature
    if request.top_k and request.top_k < z.size:
        cut = np.partition(z, -request.top_k)[-request.top_k]
        z = np.where(z < cut, -np.inf, z)
    p = np.exp(z - z.max())
    p /= p.sum()
    if request.top_p < 1.0:
        order = np.argsort(-p)
        keep = np.cumsum(p[order]) - p[order] < request.top_p
        mask = np.zeros_like(p, bool)
        mask[order[keep]] = True
        p = np.where(mask, p, 0.0)
        p /= p.sum()
    return int(rng.choice(p.size, p=p))


_NP_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16,
             "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(uint8)": np.uint8,
             "tensor(int8)": np.int8, "tensor(uint16)": np.uint16, "tensor(bool)": np.bool_}


def load(artifact: Any, opts: Mapping[str, Any], ctx: Context) -> QnnRunner:
    """Handler of ``load qnn`` and ``load onnx``; ``opts`` are parsed by the core."""
    return QnnRunner(graph.model_file(artifact), opts, ctx.threads)
