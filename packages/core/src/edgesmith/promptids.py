"""Generating from prompt token ids instead of prompt text.

``Runner.generate`` tokenizes ``RunRequest.prompt`` itself. lm-eval (a left-
truncated context) and ``/v1/completions`` (a prompt sent as token ids) have
the ids already, and a decode-then-encode round trip need not give them back.
:func:`generate_from_ids` runs the same generate loop (stop strings, timings,
the context check) on those ids, on any runner, a remote one included.

A remote runner answers one call at a time, and its token stream holds the
line while it is open, so the loop could not decode a token (for stop
strings) before the stream ended. Its tokens are therefore taken in chunks
(16, then twice as many each time, from the prompt and what came so far),
each drained before its tokens are passed on: generation stops within a
chunk of a stop string, and a sampled generation is still reproducible from
its seed, though not the same as one continuous stream. Its first-token time
includes its first chunk.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import attrs

from .runner import Runner
from .types import RunRequest, RunResult

_FIRST_CHUNK = 16


class _FixedPrompt(Runner):
    """``inner`` with its prompt ids given, not tokenized from the request."""

    def __init__(self, inner: Runner, ids: Sequence[int]):
        self._inner = inner
        self._ids = [int(i) for i in ids]
        self.backend = inner.backend
        self.load_s = inner.load_s
        self.context_length = inner.context_length

    def prompt_ids(self, request: RunRequest) -> list[int]:
        return list(self._ids)

    def tokenize(self, text: str, *, add_special: bool = True) -> list[int]:
        return self._inner.tokenize(text, add_special=add_special)

    def detokenize(self, token_ids: Sequence[int]) -> str:
        return self._inner.detokenize(token_ids)

    def stream_tokens(self, prompt_ids: list[int], request: RunRequest) -> Iterator[int]:
        from .remote import RemoteRunner

        if not isinstance(self._inner, RemoteRunner):
            yield from self._inner.stream_tokens(prompt_ids, request)
            return
        done: list[int] = []
        chunk = _FIRST_CHUNK
        while len(done) < request.max_tokens:
            want = min(chunk, request.max_tokens - len(done))
            got = list(self._inner.stream_tokens([*prompt_ids, *done], attrs.evolve(request, max_tokens=want)))
            done += got
            yield from got
            if len(got) < want:  # end of sequence
                return
            chunk *= 2

    def chat_prompt(self, messages: Sequence[Mapping[str, str]]) -> str:
        return self._inner.chat_prompt(messages)

    def logprobs(self, token_ids: Sequence[int]) -> Any:
        return self._inner.logprobs(token_ids)


def generate_from_ids(runner: Runner, ids: Sequence[int], request: RunRequest,
                      on_text: Callable[[str], None] | None = None) -> RunResult:
    """``runner.generate`` with ``ids`` as the prompt (``request.prompt`` is not read)."""
    return _FixedPrompt(runner, ids).generate(request, on_text=on_text)
