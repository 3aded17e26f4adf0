"""The functions edgesmith's task YAMLs (``data/tasks/*.yaml``) name with ``!function``.

lm-eval imports this module to resolve them, and importing it registers the
``edgesmith`` model (:mod:`edgesmith.lmeval`). lm-eval 0.4.13 has no plugin
mechanism for models, and its CLI resolves ``--tasks`` given as YAML paths
before it builds the model, so this is what lets the plain ``lm_eval`` command
take ``--model edgesmith`` when ``--tasks`` names one of these files.
"""

from __future__ import annotations

from typing import Any

from . import lmeval  # noqa: F401 - registers the "edgesmith" model with lm-eval
from .taskdocs import load, words


def _dataset(name: str) -> Any:
    import datasets

    return datasets.DatasetDict({"test": datasets.Dataset.from_list(load(name))})


def continuation_dataset(**_: Any) -> Any:
    """The documents of ``alice_continuation`` (lm-eval passes its metadata: unused)."""
    return _dataset("alice_continuation")


def completion_dataset(**_: Any) -> Any:
    """The documents of ``alice_completion``."""
    return _dataset("alice_completion")


def completion_scores(doc: dict[str, Any], results: list[str]) -> dict[str, int]:
    """process_results of ``alice_completion``: per document, 1 or 0 for
    ``first_word`` (the completion starts with the book's next word) and
    ``exact_match`` (it goes on with the whole rest of the sentence), both
    without case or the punctuation around words."""
    got, want = words(results[0]), words(doc["target"])
    return {"first_word": int(bool(got) and got[0] == want[0]),
            "exact_match": int(got[: len(want)] == want)}
