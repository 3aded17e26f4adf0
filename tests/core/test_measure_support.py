"""Models and helpers for the measuring tests (imported by test_measure_*.py).

A random tiny checkpoint repeats one token forever under greedy decoding (with
tied embeddings the input token's own logit wins), which the smoke test
rightly calls garbled. The "bigram" model here gets an output head that maps
each token's embedding to the token that most often follows it in the
evaluation text, so it writes varied, valid text and predicts that text better
than chance: a reference that passes the smoke test, against which broken
copies fail it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from edgesmith.cli import _Group
from edgesmith.measure.cli import bench, eval_
from edgesmith.measure.text import load_text
from edgesmith.testing import bigram_checkpoint  # noqa: F401 - used by test_measure_*.py

CLI = _Group(commands={"bench": bench, "eval": eval_})


def broken_copy(src: Path, dest: Path, how: str) -> Path:
    """A copy whose weights are zeroed or scrambled (rows shuffled), as a broken
    conversion would leave them, with no error from any stack."""
    from safetensors.numpy import load_file, save_file

    shutil.copytree(src, dest)
    w = load_file(str(dest / "model.safetensors"))
    rng = np.random.default_rng(7)
    for name, t in w.items():
        if t.ndim == 2:
            w[name] = np.zeros_like(t) if how == "zero" else t[rng.permutation(t.shape[0])]
    save_file(w, str(dest / "model.safetensors"), metadata={"format": "pt"})
    return dest


@pytest.fixture(scope="session")
def bigram(tiny_model, tmp_path_factory) -> Path:
    return bigram_checkpoint(tiny_model("llama"), tmp_path_factory.mktemp("bigram") / "model")


def test_bigram_model_writes_varied_text(bigram):
    from edgesmith import api

    result = api.run(bigram, "Alice was beginning to get very tired", max_tokens=12)
    assert len(set(result.token_ids)) > 3 and result.text.strip()


@pytest.fixture(scope="session")
def short_text(tmp_path_factory) -> Path:
    """The first paragraphs of the default text: enough for a few windows, quick to tokenize."""
    path = tmp_path_factory.mktemp("text") / "short.txt"
    path.write_text(load_text(None)[0][:3000])
    return path
