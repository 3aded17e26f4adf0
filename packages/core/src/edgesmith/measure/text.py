"""Evaluation text, exact-length prompts and scoring windows."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path

from ..errors import UserError

#: Shipped with the core; provenance in docs/measuring.md.
DEFAULT_TEXT = "data/alice_in_wonderland.txt"
DEFAULT_TEXT_NAME = "Alice's Adventures in Wonderland (Lewis Carroll, 1865; public domain)"


def load_text(path: str | Path | None) -> tuple[str, str]:
    """(text, a name for the report) of ``path``, or of the shipped default text."""
    if path is None:
        text = resources.files("edgesmith").joinpath(DEFAULT_TEXT).read_text(encoding="utf-8")
        return text, DEFAULT_TEXT_NAME
    p = Path(path)
    if not p.is_file():
        raise UserError(f"evaluation text {p} does not exist; give a UTF-8 text file with --text")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"evaluation text {p} is not UTF-8 ({exc.reason}); convert it to UTF-8") from exc
    if not text.strip():
        raise UserError(f"evaluation text {p} is empty; give a file with prose in it")
    return text, str(p)


def special_prefix(tokenize: Callable[..., list[int]]) -> list[int]:
    """Ids a tokenizer puts before any text (BOS and the like), found by comparing
    a tokenization with and without special tokens."""
    plain = tokenize("Hello", add_special=False)
    full = tokenize("Hello", add_special=True)
    if plain and full[-len(plain):] == plain:
        return full[: len(full) - len(plain)]
    return []


def exact_prompt(tokenize: Callable[..., list[int]], detokenize: Callable[[Sequence[int]], str],
                 text: str, n: int) -> tuple[str, int]:
    """A prompt taken from ``text`` that the runner tokenizes to exactly ``n`` ids
    (special tokens included), or the nearest length it can reach."""
    ids = tokenize(text, add_special=False)
    extra = len(tokenize("Hello", add_special=True)) - len(tokenize("Hello", add_special=False))
    while len(ids) < n:  # a short text is repeated rather than refused
        ids = ids + ids
    best: tuple[int, str, int] | None = None
    k = max(1, n - extra)
    # Decoding and re-encoding a cut can merge or split tokens at the edge, so
    # walk the cut point until the re-encoded length is right.
    for _ in range(32):
        prompt = detokenize(ids[:k])
        got = len(tokenize(prompt, add_special=True))
        if best is None or abs(got - n) < best[0]:
            best = (abs(got - n), prompt, got)
        if got == n:
            break
        k = max(1, k + (n - got))
    assert best is not None
    return best[1], best[2]


def windows(n_ids: int, width: int, limit: int | None = None) -> list[tuple[int, int]]:
    """Non-overlapping ``[start, end)`` spans of the token ids, each ``width`` long
    (the last may be shorter; one shorter than 2 tokens scores nothing and is dropped)."""
    spans = [(s, min(s + width, n_ids)) for s in range(0, n_ids, width)]
    spans = [(a, b) for a, b in spans if b - a >= 2]
    return spans[:limit] if limit else spans


def scoring_order(n: int) -> list[int]:
    """The order ``n`` windows are scored in: a fixed shuffle spread over the
    whole text, so an early round of a sequential evaluation samples all of it
    (not only chapter one), and every run scores the same windows."""
    import numpy as np

    return [int(i) for i in np.random.default_rng(0).permutation(n)]
