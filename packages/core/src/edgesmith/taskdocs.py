"""The documents of edgesmith's own lm-eval tasks, built from the shipped text.

:func:`build` makes them deterministically from *Alice's Adventures in
Wonderland* (public domain; provenance in docs/measuring.md) and
:func:`write` stores them as the JSONL files shipped in ``data/tasks/``
beside the task YAMLs (``python -m edgesmith.taskdocs`` rewrites them):

- ``alice_continuation`` (multiple choice): a passage of up to 60 words, then
  which of four sentences comes next in the book; the three others are
  sentences of about the same length (0.7-1.4 times) from paragraphs at least
  20 paragraphs away.
- ``alice_completion`` (generation): a passage and the first half of the
  next sentence; the target is the rest of that sentence.

No lm-eval import here: the CLI reads :data:`SHIPPED` to tell local tasks
from hub tasks without loading the harness.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

#: Where the task YAMLs and their JSONL documents are (lm-eval's --include_path).
TASKS_DIR = Path(str(resources.files("edgesmith").joinpath("data/tasks")))
#: The shipped tasks: name -> JSONL file in TASKS_DIR.
SHIPPED = {"alice_continuation": "alice_continuation.jsonl", "alice_completion": "alice_completion.jsonl"}
#: Documents per task (a full run of both is about a thousand model calls).
DOCS = 200

_SENTENCE_END = re.compile(r"[.!?]['\")]*\s+(?=[`'\"A-Z(])")
_TRIM = "`'\".,;:!?()-_*"


def yaml_path(name: str) -> Path:
    return TASKS_DIR / f"{name}.yaml"


def load(name: str) -> list[dict[str, Any]]:
    """The shipped documents of task ``name``."""
    text = (TASKS_DIR / SHIPPED[name]).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def words(text: str) -> list[str]:
    """Lower-case words without the punctuation around them (quotes, commas, dashes)."""
    out = []
    for w in text.replace("--", " ").split():
        w = w.strip(_TRIM).lower()
        if w:
            out.append(w)
    return out


# -- building the documents from the book -----------------------------------------------

def _paragraphs(text: str) -> list[list[str]]:
    """The book's prose paragraphs (headings and verse lines left out), each as sentences."""
    out = []
    for para in re.split(r"\n\s*\n", text):
        para = " ".join(para.split())
        if len(para.split()) < 12 or para.isupper() or para.startswith("CHAPTER"):
            continue
        sentences, start = [], 0
        for m in _SENTENCE_END.finditer(para):
            sentences.append(para[start:m.end()].strip())
            start = m.end()
        sentences.append(para[start:].strip())
        out.append([s for s in sentences if s])
    return out


def _passage(sentences: list[str], max_words: int = 60) -> str:
    """The last sentences of ``sentences`` that fit in ``max_words`` (at least one)."""
    kept: list[str] = []
    for s in reversed(sentences):
        if kept and len(" ".join([s, *kept]).split()) > max_words:
            break
        kept.insert(0, s)
    ws = " ".join(kept).split()
    return " ".join(ws[-max_words:])  # one long sentence: its end


def _spread(candidates: list[Any], n: int) -> list[Any]:
    """``n`` of ``candidates`` evenly spread over the book (all of them if fewer)."""
    if len(candidates) <= n:
        return candidates
    step = len(candidates) / n
    return [candidates[int(i * step)] for i in range(n)]


def build(text: str | None = None, n: int = DOCS) -> dict[str, list[dict[str, Any]]]:
    """The documents of both tasks, deterministically, from ``text`` (default: the shipped book)."""
    import numpy as np

    if text is None:
        text = resources.files("edgesmith").joinpath("data/alice_in_wonderland.txt").read_text(encoding="utf-8")
    paras = _paragraphs(text)
    # (paragraph, sentence index): a sentence with at least one sentence before it in its paragraph.
    spots = [(p, i) for p, ss in enumerate(paras) for i in range(1, len(ss))]
    pool = [(p, s) for p, ss in enumerate(paras) for s in ss]
    rng = np.random.default_rng(20)

    mc_spots = _spread([(p, i) for p, i in spots if 6 <= len(paras[p][i].split()) <= 30], n)
    continuation = []
    for k, (p, i) in enumerate(mc_spots):
        answer = paras[p][i]
        size = len(answer.split())
        # Distractors: sentences of about the same length, from paragraphs at least 20 away.
        near = [s for q, s in pool if abs(q - p) >= 20 and s != answer
                and 0.7 * size <= len(s.split()) <= 1.4 * size]
        picks = [near[j] for j in rng.choice(len(near), size=3, replace=False)]
        choices = [answer, *picks]
        order = [int(j) for j in rng.permutation(4)]
        continuation.append({"id": k, "paragraph": p, "passage": _passage(paras[p][:i]),
                             "choices": [choices[j] for j in order], "label": order.index(0)})

    # Other sentences than the multiple-choice task's, with a tail that has words.
    gen_spots = [(p, i) for p, i in spots if (p, i) not in set(mc_spots)
                 and 8 <= len(paras[p][i].split()) <= 40
                 and words(" ".join(paras[p][i].split()[(len(paras[p][i].split()) + 1) // 2:]))]
    completion = []
    for k, (p, i) in enumerate(_spread(gen_spots, n)):
        ws = paras[p][i].split()
        cut = (len(ws) + 1) // 2
        completion.append({"id": k, "paragraph": p,
                           "context": _passage(paras[p][:i]) + " " + " ".join(ws[:cut]),
                           "target": " ".join(ws[cut:])})
    return {"alice_continuation": continuation, "alice_completion": completion}


def write(dest: str | Path | None = None) -> list[Path]:
    """(Re)write the shipped JSONL files (``python -m edgesmith.taskdocs``)."""
    dest = Path(dest) if dest else TASKS_DIR
    out = []
    for name, docs in build().items():
        path = dest / SHIPPED[name]
        path.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8")
        out.append(path)
    return out


if __name__ == "__main__":
    for p in write():
        print(p)
