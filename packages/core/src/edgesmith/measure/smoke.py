"""The smoke test: greedy generation from fixed prompts must look like text.

Quantization and conversion bugs often produce output that no stack reports
as an error: nothing at all, one token repeated, or bytes that do not decode.
These checks catch that after every evaluation.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from typing import Any

PROMPTS = (
    "The morning train left the valley",
    "Alice was beginning to get very tired",
    "Here is a short story about a river:",
    "The three primary colours are",
)
#: Tokens generated per prompt (greedy).
TOKENS = 24
#: Share of unprintable characters (U+FFFD, controls other than whitespace)
#: above which the text counts as invalid.
MAX_BAD_CHARS = 0.2


def _bad_char(c: str) -> bool:
    if c == "\ufffd":
        return True
    if c in "\n\r\t":
        return False
    return unicodedata.category(c) in ("Cc", "Cs", "Co", "Cn")


def check(text: str, token_ids: Sequence[int]) -> str | None:
    """Why one generation fails the smoke test, or ``None`` when it passes."""
    if not token_ids or not text.strip():
        return "empty output"
    if len(token_ids) >= 4 and len(set(token_ids)) == 1:
        return f"one token repeated ({len(token_ids)} x id {token_ids[0]})"
    bad = sum(_bad_char(c) for c in text)
    if bad / max(1, len(text)) > MAX_BAD_CHARS:
        return f"invalid text ({bad} of {len(text)} characters are U+FFFD or control characters)"
    return None


def summarize(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """The verdict over every prompt: it passes only when every prompt passes."""
    failures = [f"{s['prompt']!r}: {s['problem']}" for s in samples if s.get("problem")]
    return {"passed": not failures, "failures": failures, "samples": samples}
