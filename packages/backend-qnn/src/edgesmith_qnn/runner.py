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

from edgesmith.errors import UserError
from edgesmith.graphinputs import check_inputs, dims_of
from edgesmith.lmfeed import lm_feed
from edgesmith.logsoftmax import log_softmax
from edgesmith.onnxtypes import ort_dtype
from edgesmith.runner import Runner, peak_rss_mb
from edgesmith.types import Context, RunRequest

from . import ep, graph, sampling


class QnnRunner(Runner):
    def __init__(self, path: Path, opts: Mapping[str, Any], threads: int | None = None):
        from edgesmith import encoders

        """``opts``: parsed :data:`edgesmith_qnn.options.LOAD_OPTIONS`."""
        self.path = path
        self.cpu_fallback = opts["cpu_fallback"]
        ep.require_float_target(path, graph.load(path, weights=False), opts)
        self.session = ep.session(path, opts, cpu_fallback=self.cpu_fallback, threads=threads)
        self.providers = self.session.get_providers()
        self.input_specs = {i.name: (dims_of(i.shape), ort_dtype(i.type)) for i in self.session.get_inputs()}
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
        # An encoder export (config.json beside it names one) embeds -p TEXT.
        self.encoder = None
        if not self._lm_len and encoders.is_encoder_dir(path.parent):
            self.encoder = encoders.TextEncoder(path.parent, self.input_specs,
                                                truncate=opts.get("truncate", True))
            self.context_length = self.encoder.max_len
        #: Timings of the last :meth:`infer` call.
        self.last_timings: dict[str, float] = {}

    # -- non-generative use ------------------------------------------------------

    def infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the graph once on named inputs; returns named outputs."""
        feed = check_inputs(inputs, self.input_specs)
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

        specs = {name: (dims, np.int64 if dtype is None else dtype)
                 for name, (dims, dtype) in self.input_specs.items()}
        return encode_texts(self.path.parent / "tokenizer.json", [text], specs)[0]

    def generate(self, request: RunRequest, on_text: Any = None) -> Any:
        if self.encoder is None:
            return super().generate(request, on_text)
        from edgesmith import encoders

        return encoders.generate(self, self.encoder, request, on_text)

    # -- Runner primitives --------------------------------------------------------

    def tokenize(self, text: str, *, add_special: bool = True) -> list[int]:
        if self._tokenizer is None:
            return super().tokenize(text, add_special=add_special)
        return list(self._tokenizer.encode(text, add_special_tokens=add_special).ids)

    def detokenize(self, token_ids: Sequence[int]) -> str:
        if self._tokenizer is None:
            return super().detokenize(token_ids)
        return self._tokenizer.decode(list(token_ids), skip_special_tokens=True)

    def stream_tokens(self, prompt_ids: list[int], request: RunRequest) -> Iterator[int]:
        if not self._lm_len:  # a fixed-shape graph with no logits output
            raise self.takes_arrays()
        rng = np.random.default_rng(request.seed)
        ids = list(prompt_ids)
        eos = self._eos_ids()
        for _ in range(request.max_tokens):
            if len(ids) >= self._lm_len:
                return
            row = self._window_logits(ids)[len(ids) - 1].astype(np.float64)
            tok = sampling.pick(row, request, rng)
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
        return log_softmax(self._window_logits(ids)[: len(ids)], dtype=np.float64)

    def _causal_window(self) -> int | None:
        shape = self.input_specs.get("input_ids", (None,))[0]
        if "logits" not in self.outputs or not shape or len(shape) != 2 or shape[0] != 1:
            return None
        extra = set(self.input_specs) - {"input_ids", "attention_mask", "position_ids"}
        return int(shape[1]) if isinstance(shape[1], int) and not extra else None

    def _window_logits(self, ids: list[int]) -> np.ndarray:
        """Logits [S, V] for ``ids`` right-padded to the window (causal: the
        padding after a position cannot change it)."""
        return self.infer(lm_feed(ids, self.input_specs, width=self._lm_len))["logits"][0]

    def _eos_ids(self) -> set[int]:
        if self._tokenizer is None:
            return set()
        names = ("</s>", "<|endoftext|>", "<|im_end|>", "<eos>", "[SEP]")
        return {i for i in (self._tokenizer.token_to_id(t) for t in names) if i is not None}

    def close(self) -> None:
        self.session = None


def load(artifact: Any, opts: Mapping[str, Any], ctx: Context) -> Runner:
    """Handler of ``load qnn`` and ``load onnx``; ``opts`` are parsed by the core.
    A language-model pipeline (llm.json) generates through :mod:`edgesmith_qnn.llm_runner`."""
    from . import llm

    if llm.is_pipeline(artifact.directory):
        from .llm_runner import load as load_pipeline

        return load_pipeline(Path(artifact.directory), opts, ctx)
    return QnnRunner(graph.model_file(artifact), opts, ctx.threads)
