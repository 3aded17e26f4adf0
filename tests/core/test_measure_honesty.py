"""Perplexity computed by edgesmith agrees with transformers' own loss on the
same tokens and windows (within 1%)."""

from __future__ import annotations

import math

import pytest

from edgesmith.measure.evaluate import evaluate
from edgesmith.measure.gates import Gates
from edgesmith.measure.text import scoring_order, windows

from .test_measure_support import bigram, short_text  # noqa: F401 - fixtures


def test_reference_perplexity_matches_transformers_loss(bigram, short_text):  # noqa: F811
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    doc = evaluate([bigram], bigram, text=short_text, window=48, max_windows=3, smoke_tokens=4,
                   threads=1, gates=Gates())
    ours = doc["reference"]["perplexity"]

    tok = transformers.AutoTokenizer.from_pretrained(str(bigram))
    model = transformers.AutoModelForCausalLM.from_pretrained(str(bigram), dtype=torch.float32)
    model.eval()
    ids = tok(short_text.read_text(), add_special_tokens=False)["input_ids"]
    total, count = 0.0, 0
    with torch.no_grad():
        spans = windows(len(ids), 48)
        for a, b in [spans[w] for w in scoring_order(len(spans))[:3]]:  # the windows eval scores first
            x = torch.tensor([ids[a:b]])
            loss = model(input_ids=x, labels=x).loss.item()  # mean over the b - a - 1 targets
            total += loss * (b - a - 1)
            count += b - a - 1
    theirs = math.exp(total / count)
    assert count == doc["reference"]["scored_tokens"]
    assert ours == pytest.approx(theirs, rel=0.01)
