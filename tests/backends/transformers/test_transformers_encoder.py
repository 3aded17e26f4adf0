"""An encoder checkpoint through ``load hf``: the float32 reference of encoder eval.
Its vector is transformers' own forward, pooled as the checkpoint's
sentence-transformers config says; a fixed max_length cuts as a fixed export does."""

from __future__ import annotations

import numpy as np
import pytest

from edgesmith import api
from edgesmith.errors import UserError
from edgesmith.testing.tinybert import tiny_bert
from edgesmith.types import RunRequest

TEXT = "The library was quiet except for the turning of pages."


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    return tiny_bert(tmp_path_factory.mktemp("bert") / "bert", pooling="mean", normalize=True)


def _direct(checkpoint, text: str, keep: int | None = None) -> np.ndarray:
    import torch
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(checkpoint)
    enc = tok(text, return_tensors="pt")
    if keep:
        enc = {k: v[:, :keep] for k, v in enc.items()}
    model = AutoModel.from_pretrained(checkpoint, dtype=torch.float32).eval()
    with torch.inference_mode():
        hidden = model(**enc).last_hidden_state[0].numpy()
    vec = hidden.mean(axis=0)
    return vec / np.linalg.norm(vec)


def test_the_embedding_is_transformers_own_mean_pooled(bert):
    with api.load(bert, backend="transformers") as runner:
        result = runner.generate(RunRequest(prompt=TEXT))
    vec = np.asarray(result.extra["embedding"])
    want = _direct(bert, TEXT)
    assert vec.shape == want.shape
    assert np.abs(vec - want).max() < 1e-5
    assert result.extra["pooling"] == "mean" and result.extra["normalized"]
    assert "embedding:" in result.text


def test_max_length_cuts_the_text_keeping_the_closing_token(bert):
    with api.load(bert, backend="transformers", options={"max_length": 6}) as runner:
        result = runner.generate(RunRequest(prompt=TEXT))
    assert result.extra["truncated_tokens"] > 0 and result.extra["tokens"] == 6
    # Not equal to cutting blindly: the core's encoder keeps [SEP] last, as exports do.
    blind = _direct(bert, TEXT, keep=6)
    assert np.abs(np.asarray(result.extra["embedding"]) - blind).max() > 1e-4


def test_only_float32(bert):
    with pytest.raises(UserError, match="float32 only"):
        api.load(bert, backend="transformers", options={"dtype": "bf16"})
