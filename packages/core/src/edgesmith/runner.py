"""The loaded-model interface every backend's ``edgesmith_run`` returns.

A backend implements the small primitives (tokenize, detokenize, stream token
ids, log-probabilities, chat prompt). The base class owns ``generate``: it
times the stream and decodes text the same way for every backend, so "time to
first token" or "decode tokens/s" mean one thing across stacks. A runner of
array-only graphs (encoders, vision) implements none of the text primitives:
by default they refuse with :meth:`Runner.takes_arrays`
(:class:`edgesmith.graphrunner.GraphRunner` is the base for those).
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .errors import UnsupportedError, UserError
from .types import RunRequest, RunResult, Timings

if TYPE_CHECKING:
    import numpy as np


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB.

    On Linux this is VmHWM, which belongs to this process image alone;
    getrusage's ru_maxrss survives exec and would report a large parent's peak.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


class Runner:
    """A model loaded by one backend. Use as a context manager to free it."""

    #: Backend name, set by the core after loading.
    backend: str = ""
    #: Seconds the backend spent loading (set by the core around the hook).
    load_s: float | None = None
    #: Maximum sequence length the model accepts, when known.
    context_length: int | None = None

    #: Named array inputs of a graph run through :meth:`infer`, ``{name: (dims, dtype)}``
    #: (:data:`edgesmith.graphinputs.InputSpec`), when the runner knows them.
    input_specs: Mapping[str, Any] | None = None

    # -- primitives a text backend implements ---------------------------------

    def tokenize(self, text: str, *, add_special: bool = True) -> list[int]:
        """Token ids of ``text``; ``add_special`` adds BOS etc. as the model does."""
        raise self.takes_arrays()

    def detokenize(self, token_ids: Sequence[int]) -> str:
        """Text of ``token_ids``, skipping special tokens."""
        raise self.takes_arrays()

    def stream_tokens(self, prompt_ids: list[int], request: RunRequest) -> Iterator[int]:
        """Yield generated token ids one by one.

        Stop after ``request.max_tokens`` tokens or at end of sequence (do not
        yield the end-of-sequence token). Honour temperature/top_p/top_k/seed.
        The caller may close the generator early (stop strings).
        """
        raise self.takes_arrays()

    def takes_arrays(self) -> UserError:
        """The error of the text primitives on a model that takes arrays, not
        text; naming :attr:`input_specs` when known. Override for a sharper one."""
        names = list(self.input_specs or ())
        give = " ".join(f"--input {n}=FILE.npy" for n in names) or "--input NAME=FILE.npy for each input"
        return UnsupportedError(f"backend {self.backend!r} runs this model on arrays, not text; "
                                f"run it with {give} (Runner.infer) instead of a prompt")

    def logprobs(self, token_ids: Sequence[int]) -> np.ndarray:
        """Log-softmax of next-token distributions, shape ``(len(ids), vocab)``.

        Row ``i`` is the distribution of the token after ``token_ids[: i + 1]``.
        """
        raise UnsupportedError(f"backend {self.backend!r} cannot score tokens for this artifact")

    def chat_prompt(self, messages: Sequence[Mapping[str, str]]) -> str:
        """The prompt text for ``messages`` through the model's chat template,
        ending with the assistant's generation prompt."""
        raise UnsupportedError(
            f"backend {self.backend!r} has no chat template for this model; use -p PROMPT instead"
        )

    def infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run a non-generative graph (encoder, vision) on named input arrays."""
        raise UnsupportedError(
            f"backend {self.backend!r} runs this artifact only as a text generator; use -p PROMPT"
        )

    def close(self) -> None:
        """Free the model. Called once; later calls are not made."""

    # -- provided -------------------------------------------------------------

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def prompt_ids(self, request: RunRequest) -> list[int]:
        if request.messages:
            return self.tokenize(self.chat_prompt(request.messages), add_special=False)
        if request.prompt is None:
            raise UserError("no prompt given; pass -p PROMPT or --chat")
        if not request.prompt:
            raise UserError("the prompt is empty; give some text with -p PROMPT")
        return self.tokenize(request.prompt)

    def generate(
        self, request: RunRequest, on_text: Callable[[str], None] | None = None
    ) -> RunResult:
        """Generate for ``request``; ``on_text`` receives text pieces as they decode."""
        if request.max_tokens < 1:
            raise UserError(f"max_tokens must be at least 1, got {request.max_tokens}")
        ids = self.prompt_ids(request)
        if not ids:
            raise UserError("the prompt gives no tokens; give some text with -p PROMPT")
        if self.context_length and len(ids) + request.max_tokens > self.context_length:
            raise UserError(
                f"prompt ({len(ids)} tokens) plus max_tokens ({request.max_tokens}) exceeds the "
                f"model's context of {self.context_length}; shorten the prompt or lower --max-tokens"
            )
        decoder = _IncrementalDecoder(self.detokenize)
        out: list[int] = []
        text = ""
        shown = 0  # characters of text already passed to on_text
        finish = "length"
        t_first = t_last = None

        def show(upto: int) -> None:
            nonlocal shown
            if on_text and upto > shown:
                on_text(text[shown:upto])
            shown = max(shown, upto)

        live = on_text is not None or bool(request.stop)
        t0 = time.perf_counter()
        stream = self.stream_tokens(ids, request)
        try:
            for tok in stream:
                now = time.perf_counter()
                if t_first is None:
                    t_first = now
                t_last = now
                out.append(int(tok))
                # Text is only needed per token for streaming or stop strings;
                # otherwise it is decoded once after the timed loop.
                piece = decoder.push(int(tok)) if live else ""
                if piece:
                    text += piece
                    cut = _stop_at(text, request.stop)
                    if cut is not None:
                        text = text[:cut]
                        finish = "stop"
                        break
                    # Hold back a tail that may be the start of a stop string.
                    show(len(text) - _held(text, request.stop))
                if len(out) >= request.max_tokens:
                    break
        finally:
            close = getattr(stream, "close", None)
            if close:
                close()
        t_end = time.perf_counter()
        if not live:
            text = self.detokenize(out)
            finish = "length" if len(out) >= request.max_tokens else "stop"
        elif finish != "stop":
            text += decoder.flush()
            cut = _stop_at(text, request.stop)
            if cut is not None:
                text, finish = text[:cut], "stop"
            else:
                finish = "length" if len(out) >= request.max_tokens else "stop"
        show(len(text))
        ttft = (t_first - t0) if t_first is not None else None
        decode = None
        if t_first is not None and t_last is not None and len(out) > 1 and t_last > t_first:
            decode = (len(out) - 1) / (t_last - t_first)
        timings = Timings(
            load_s=self.load_s,
            ttft_s=ttft,
            prefill_tps=(len(ids) / ttft) if ttft else None,
            decode_tps=decode,
            total_s=t_end - t0,
            peak_rss_mb=peak_rss_mb(),
        )
        return RunResult(
            text=text,
            token_ids=out,
            prompt_tokens=len(ids),
            finish_reason=finish,
            timings=timings,
            backend=self.backend,
        )


def _stop_at(text: str, stops: Sequence[str]) -> int | None:
    hits = [text.find(s) for s in stops if s]
    hits = [h for h in hits if h >= 0]
    return min(hits) if hits else None


def _held(text: str, stops: Sequence[str]) -> int:
    """Length of the longest tail of ``text`` that begins some stop string."""
    best = 0
    for s in stops:
        for n in range(min(len(s) - 1, len(text)), best, -1):
            if s.startswith(text[-n:]):
                best = n
                break
    return best


class _IncrementalDecoder:
    """Turns a token stream into text pieces with about one detokenize call per token.

    It decodes a short window of recent ids and emits what grew since the last
    call, holding back text that ends in an incomplete UTF-8 sequence (shown
    as U+FFFD). The window restarts a few tokens back every so often, so the
    cost per token stays constant; decoding whole windows (not single tokens)
    keeps tokenizers that merge spaces or bytes across tokens right.
    """

    _MAX_WINDOW = 24
    _KEEP = 4

    def __init__(self, detokenize: Callable[[Sequence[int]], str]):
        self._detok = detokenize
        self._ids: list[int] = []
        self._start = 0  # first id of the decode window
        self._shown = ""  # text of the window already emitted

    def push(self, token: int) -> str:
        self._ids.append(token)
        now = self._detok(self._ids[self._start :])
        if now.endswith("\ufffd") or len(now) <= len(self._shown):
            return ""
        piece = now[len(self._shown) :]
        self._shown = now
        if len(self._ids) - self._start > self._MAX_WINDOW:
            self._start = len(self._ids) - self._KEEP
            self._shown = self._detok(self._ids[self._start :])
        return piece

    def flush(self) -> str:
        now = self._detok(self._ids[self._start :])
        piece = now[len(self._shown) :] if len(now) > len(self._shown) else ""
        self._shown = now
        return piece
