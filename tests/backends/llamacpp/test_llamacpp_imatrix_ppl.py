"""The importance matrix lowers perplexity of the low-bit types (issue 3).

A random-weight model's perplexity sits near the vocabulary size whatever the
rounding, so this uses a model with real structure: the tiny llama whose output
head is rewired so that each token predicts its most frequent follower in the
core's shipped text (a bigram model inside a transformer). Calibration and
evaluation use disjoint slices of that text.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from edgesmith import api
from edgesmith.measure.text import load_text
from edgesmith.testing import bigram_checkpoint

WINDOW = 256
WINDOWS = 4


def _ppl(path: Path, text: str) -> float:
    with api.load(path, backend="llamacpp", threads=2) as runner:
        ids = runner.tokenize(text)
        assert len(ids) >= WINDOW * WINDOWS
        nll, n = 0.0, 0
        for k in range(WINDOWS):
            w = ids[k * WINDOW:(k + 1) * WINDOW]
            lp = np.asarray(runner.logprobs(w), dtype=np.float64)
            nll -= float(lp[np.arange(len(w) - 1), w[1:]].sum())
            n += len(w) - 1
    return math.exp(nll / n)


@pytest.fixture(scope="module")
def bigram_gguf(tiny_model, tmp_path_factory) -> tuple[Path, Path, str]:
    """(f32 GGUF of the bigram model, calibration file, held-out text)."""
    text = load_text(None)[0]
    work = tmp_path_factory.mktemp("bigram")
    ckpt = bigram_checkpoint(tiny_model("llama"), work / "ckpt", text)
    api.convert(ckpt, "gguf", work / "gguf", backend="llamacpp", dtype="f32")
    calib = work / "calibration.txt"
    calib.write_text(text[:40000])
    return work / "gguf", calib, text[80000:]


@pytest.mark.parametrize("scheme", ["Q2_K", "IQ3_S"])
def test_imatrix_lowers_perplexity(bigram_gguf, tmp_path: Path, scheme: str) -> None:
    src, calib, held_out = bigram_gguf
    plain = api.quantize(src, tmp_path / "plain", scheme=scheme, backend="llamacpp")
    weighted = api.quantize(src, tmp_path / "weighted", scheme=scheme, calibration=calib, backend="llamacpp")
    assert weighted.details["imatrix"] and not plain.details["imatrix"]
    with_matrix, without = _ppl(weighted.path, held_out), _ppl(plain.path, held_out)
    print(f"{scheme}: perplexity with matrix {with_matrix:.3f}, without {without:.3f}, "
          f"f32 {_ppl(src, held_out):.3f}")
    assert with_matrix < without
