"""Recognise a byte-level BPE pre-tokenizer from its declaration in tokenizer.json.

llama.cpp's converter identifies pre-tokenizers by hashing the token ids of a
probe string. That hash also depends on the learned merges, so a tokenizer
trained on new data (edgesmith's tiny test models, a user's own tokenizer)
is "not recognised" even when it splits text exactly like GPT-2. The split
rules, though, are declared in tokenizer.json; when they are one of the rule
sets llama.cpp implements we can name it. We only claim a match when the
whole pre-tokenizer pipeline is equivalent, otherwise we return None and the
caller reports the tokenizer as unsupported.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# The split regexes as published in each family's tokenizer.json.
_GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
_LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
           r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
          r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

#: tiktoken's o200k_base: GPT-4o, Phi-4 (llama.cpp's "gpt-4o").
_O200K = (r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
          r"(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+"
          r"[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}"
          r"| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")

#: explicit Split regex (followed by a regex-free ByteLevel) -> llama.cpp pre-tokenizer name
_SPLIT_REGEXES = {_GPT2: "gpt-2", _LLAMA3: "llama-bpe", _QWEN2: "qwen2", _O200K: "gpt-4o"}
#: llama.cpp pre-tokenizers whose Hugging Face tokenizers normalize text first, which
#: llama.cpp does not do: Qwen2's tokenizer.json (Qwen1.5 to Qwen3) starts with NFC.
#: The runner normalizes before tokenizing, the GGUF -> HF export writes the normalizer.
NORMALIZE_FIRST = {"qwen2": "NFC"}
#: Normalizers a family declares in front of its split rules. Qwen2's tokenizer.json
#: has NFC; llama.cpp's qwen2 pre-tokenizer (what the converter picks for the real
#: Qwen2/2.5/3 by hash) has none, which is the same on NFC text.
_NORMALIZERS = {"qwen2": ({"type": "NFC"},)}


def _bytelevel(step: Any, *, use_regex: bool) -> bool:
    return (isinstance(step, dict) and step.get("type") == "ByteLevel"
            and not step.get("add_prefix_space", False)
            and bool(step.get("use_regex", True)) == use_regex)


def _split_regex(step: Any) -> str | None:
    if not (isinstance(step, dict) and step.get("type") == "Split"):
        return None
    if step.get("behavior") != "Isolated" or step.get("invert", False):
        return None
    pattern = step.get("pattern") or {}
    return pattern.get("Regex")


def identify(tokenizer: dict[str, Any]) -> str | None:
    """llama.cpp's name for the pre-tokenizer declared in ``tokenizer`` (tokenizer.json), or None."""
    model = tokenizer.get("model") or {}
    if model.get("type") != "BPE":
        return None
    decoder = tokenizer.get("decoder") or {}
    if decoder.get("type") != "ByteLevel":
        return None
    name = _identify_pre(tokenizer.get("pre_tokenizer"))
    normalizer = tokenizer.get("normalizer")
    if normalizer is not None and (name is None or normalizer not in _NORMALIZERS.get(name, ())):
        return None
    return name


def _identify_pre(pre: Any) -> str | None:
    if _bytelevel(pre, use_regex=True):
        return "gpt-2"  # ByteLevel's built-in regex is GPT-2's
    if not (isinstance(pre, dict) and pre.get("type") == "Sequence"):
        return None
    steps = pre.get("pretokenizers") or []
    if len(steps) != 2:
        return None
    first, second = steps
    regex = _split_regex(first)
    if regex is not None and _bytelevel(second, use_regex=False):
        return _SPLIT_REGEXES.get(regex)
    if (isinstance(first, dict) and first.get("type") == "Digits"
            and first.get("individual_digits") and _bytelevel(second, use_regex=True)):
        return "smollm"  # single digits, then GPT-2 splitting
    return None


def describe(tokenizer: dict[str, Any]) -> str:
    """A short human description of a pre-tokenizer, for error messages."""
    pre = tokenizer.get("pre_tokenizer")
    if isinstance(pre, dict) and pre.get("type") == "Sequence":
        return "Sequence[" + ", ".join(str(s.get("type")) for s in pre.get("pretokenizers") or []) + "]"
    if isinstance(pre, dict):
        return str(pre.get("type"))
    return "none"


def identify_file(path: Path) -> str | None:
    try:
        return identify(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return None
