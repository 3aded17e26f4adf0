"""Log-probabilities of served tokens: ``logprobs``/``echo`` on ``/v1/completions``,
``logprobs``/``top_logprobs`` on ``/v1/chat/completions``, in the OpenAI shapes.

One ``Runner.logprobs`` call over the prompt and the generated tokens gives
every position's next-token distribution (the model's own, at temperature 1,
whatever the sampling settings were): the log-probability of the token that
came, and the ``top`` most likely alternatives. The first token of a prompt
has no distribution before it, so its log-probability is null.

A token's text is decoded with a little of the text before it (whole windows,
not lone tokens, so tokenizers that put a word's space on its first token
decode it), and a token that ends inside a UTF-8 character shows U+FFFD.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from ..runner import Runner

#: Tokens of text before a token that its decode starts from.
_LEFT = 2
#: Tokens decoded against the same window start (one decode per token within it).
_SPAN = 8
#: What a log-probability of -inf is shown as (JSON has no infinity).
FLOOR = -9999.0


def _finite(x: float) -> float:
    return x if math.isfinite(x) else FLOOR


def _grown(before: str, now: str) -> str:
    """What ``now`` adds to ``before`` (past their common start, when a U+FFFD got replaced)."""
    if now.startswith(before):
        return now[len(before):]
    n = 0
    while n < min(len(before), len(now)) and before[n] == now[n]:
        n += 1
    return now[n:]


def pieces(detokenize: Callable[[Sequence[int]], str], ids: Sequence[int], start: int = 0) -> list[str]:
    """The text of each of ``ids[start:]``, decoded after up to a few tokens before it."""
    out: list[str] = []
    window, before = -1, ""
    for k in range(start, len(ids)):
        s = max(0, k - k % _SPAN - _LEFT)
        if s != window:
            window, before = s, detokenize(ids[s:k]) if k > s else ""
        now = detokenize(ids[s:k + 1])
        out.append(_grown(before, now))
        before = now
    return out


def _alternative(detokenize: Callable[[Sequence[int]], str], ids: Sequence[int], k: int, token: int) -> str:
    s = max(0, k - _LEFT)
    return _grown(detokenize(ids[s:k]), detokenize([*ids[s:k], token]))


class Scored:
    """Per position of ``ids[start:]``: the log-probability of its token (None for the
    very first token of the sequence), its text, and its ``top`` alternatives. With
    ``tail``, one more position: the likeliest token after the last (the end of
    sequence that stopped a greedy generation, which runners do not yield)."""

    def __init__(self, runner: Runner, ids: Sequence[int], start: int, top: int, tail: bool = False):
        import numpy as np

        self.ids = [int(i) for i in ids]
        lp = np.asarray(runner.logprobs(self.ids), dtype=np.float32)
        if tail:
            self.ids.append(int(lp[-1].argmax()))
        self.text = pieces(runner.detokenize, self.ids, start)
        self.logprob: list[float | None] = []
        self.top: list[list[tuple[str, float]] | None] = []
        for k in range(start, len(self.ids)):
            if k == 0:
                self.logprob.append(None)
                self.top.append(None)
                continue
            row = lp[k - 1]
            self.logprob.append(_finite(float(row[self.ids[k]])))
            alts = []
            if top:
                best = np.argpartition(-row, min(top, row.shape[0] - 1))[:top]
                for t in sorted(best.tolist(), key=lambda t: -row[t]):
                    text = self.text[k - start] if t == self.ids[k] else \
                        _alternative(runner.detokenize, self.ids, k, t)
                    alts.append((text, _finite(float(row[t]))))
            self.top.append(alts)


def completion(runner: Runner, prompt_ids: Sequence[int], generated: Sequence[int], *, top: int, echo: bool,
               prompt_chars: int, ended: bool = False) -> dict[str, Any]:
    """``choices[].logprobs`` of ``/v1/completions``: ``tokens``, ``token_logprobs``,
    ``top_logprobs`` (``{token: logprob}``, null where there is no distribution) and
    ``text_offset`` (characters into prompt + completion; the completion's first token
    is at ``prompt_chars``, the length of the prompt text)."""
    ids = [*prompt_ids, *generated]
    start = 0 if echo else len(prompt_ids)
    scored = Scored(runner, ids, start, top, tail=ended)
    offsets = []
    at = 0
    for k, text in enumerate(scored.text, start=start):
        if k == len(prompt_ids):
            at = prompt_chars  # the completion starts right after the prompt text as returned
        offsets.append(at)
        at += len(text)
    return {"tokens": scored.text, "token_logprobs": scored.logprob,
            "top_logprobs": [None if t is None else dict(t) for t in scored.top],
            "text_offset": offsets}


def _entry(text: str, logprob: float) -> dict[str, Any]:
    return {"token": text, "logprob": logprob, "bytes": list(text.encode("utf-8"))}


def chat(runner: Runner, prompt_ids: Sequence[int], generated: Sequence[int], *, top: int,
         ended: bool = False) -> dict[str, Any]:
    """``choices[].logprobs`` of ``/v1/chat/completions``: ``content``, one entry per
    generated token with ``token``, ``logprob``, ``bytes`` and ``top_logprobs``."""
    if not generated and not ended:
        return {"content": [], "refusal": None}
    scored = Scored(runner, [*prompt_ids, *generated], len(prompt_ids), top, tail=ended)
    content = [{**_entry(text, lp if lp is not None else FLOOR),
                "top_logprobs": [_entry(t, v) for t, v in (alts or [])]}
               for text, lp, alts in zip(scored.text, scored.logprob, scored.top, strict=True)]
    return {"content": content, "refusal": None}


def shown(runner: Runner, prompt_ids: Sequence[int], generated: Sequence[int], text: str) -> list[int]:
    """The generated tokens the returned ``text`` shows: those that start before its end
    (generation can run a token past a stop string, and the text is cut there)."""
    if not generated:
        return []
    at, n = 0, 0
    for piece in pieces(runner.detokenize, [*prompt_ids, *generated], len(prompt_ids)):
        if at >= len(text):
            break
        at += len(piece)
        n += 1
    return list(generated[:n])
