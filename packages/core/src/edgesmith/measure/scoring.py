"""Per-window scoring: perplexity, KL divergence and top-1 agreement.

The reference's next-token distributions cannot all be kept (tokens x vocab
floats is gigabytes for a real model), so for each window the reference
worker stores its ``k`` most likely tokens with their log-probabilities plus
the log of the mass of all the others ("tail"). KL is then computed over
those ``k + 1`` bins: exact when ``k`` covers the vocabulary, otherwise a
lower bound of the full KL that is tight when the tail mass is small (the
report shows the mean tail mass so a reader can judge).

Rows are processed in blocks so that float64 copies of a window stay small
even with a 150k-entry vocabulary.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError

#: Rows converted to float64 at a time (64 x 150k x 8 bytes = 77 MB).
BLOCK = 64


def _blocks(lp: np.ndarray, offset: int, chunk: list[int]) -> Iterator[tuple[slice, np.ndarray, np.ndarray]]:
    """Blocks of the rows predicting ``chunk[1:]``, with their targets. Row
    ``offset + j`` of ``lp`` is the distribution after ``chunk[j]`` (``offset``
    special tokens lead the window)."""
    m = len(chunk) - 1
    if lp.ndim != 2 or lp.shape[0] < offset + m:
        raise UserError(f"the backend returned log-probabilities of shape {lp.shape} for "
                        f"{offset + len(chunk)} tokens; it does not score tokens correctly")
    targets = np.asarray(chunk[1:], dtype=np.int64)
    for a in range(0, m, BLOCK):
        b = min(a + BLOCK, m)
        yield slice(a, b), lp[offset + a: offset + b].astype(np.float64), targets[a:b]


def _logsumexp_without(rows: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """log of the probability mass outside the columns ``idx`` of each row."""
    if idx.shape[1] >= rows.shape[1]:
        return np.full(rows.shape[0], -np.inf)
    r = rows.copy()
    np.put_along_axis(r, idx, -np.inf, axis=1)
    top = r.max(axis=1, keepdims=True)
    return (top + np.log(np.exp(r - top).sum(axis=1, keepdims=True)))[:, 0]


def reference_window(lp: np.ndarray, offset: int, chunk: list[int], top_k: int,
                     store: Path) -> dict[str, Any]:
    parts: dict[str, list[np.ndarray]] = {"idx": [], "top": [], "tail": [], "argmax": []}
    nll = tail_mass = 0.0
    vocab = lp.shape[-1]
    k = min(top_k, vocab)
    for _, rows, targets in _blocks(lp, offset, chunk):
        idx = np.argpartition(-rows, k - 1, axis=1)[:, :k]
        tail = _logsumexp_without(rows, idx)
        parts["idx"].append(idx.astype(np.int32))
        # The backend's values were float32 to begin with: storing them so loses nothing.
        parts["top"].append(np.take_along_axis(rows, idx, axis=1).astype(np.float32))
        parts["tail"].append(tail)
        parts["argmax"].append(rows.argmax(axis=1).astype(np.int32))
        nll -= rows[np.arange(len(targets)), targets].sum()
        tail_mass += np.exp(tail).sum()
    np.savez(store, **{key: np.concatenate(v) for key, v in parts.items()})
    return {"n": len(chunk) - 1, "nll": float(nll), "tail": float(tail_mass), "max_vocab": vocab}


def compare_window(lp: np.ndarray, offset: int, chunk: list[int], store: Path,
                   kl_out: Path | None = None) -> dict[str, Any]:
    """This window's sums against the reference's stored distributions; the
    per-token KL values go to ``kl_out`` (their percentiles need every token)."""
    ref = np.load(store)
    vocab = lp.shape[-1]
    if len(chunk) - 1 != ref["idx"].shape[0]:
        raise UserError(f"it scored {len(chunk) - 1} positions where the reference scored "
                        f"{ref['idx'].shape[0]}; its scoring does not line up with the reference's")
    if ref["idx"].max() >= vocab:
        raise UserError(f"its vocabulary ({vocab} entries) is smaller than the reference's; "
                        f"compare artifacts made from the same model")
    nll = top1 = 0.0
    kls = []
    for part, rows, targets in _blocks(lp, offset, chunk):
        idx, p_tail = ref["idx"][part].astype(np.int64), ref["tail"][part]
        p_top = ref["top"][part].astype(np.float64)
        q_top = np.take_along_axis(rows, idx, axis=1)
        q_tail = _logsumexp_without(rows, idx)
        kl = (np.exp(p_top) * (p_top - q_top)).sum(axis=1)
        has_tail = np.isfinite(p_tail)
        kl[has_tail] += np.exp(p_tail[has_tail]) * (p_tail[has_tail] - q_tail[has_tail])
        kls.append(np.maximum(kl, 0.0))
        top1 += (rows.argmax(axis=1) == ref["argmax"][part]).sum()
        nll -= rows[np.arange(len(targets)), targets].sum()
    kl_tokens = np.concatenate(kls).astype(np.float32)
    if kl_out is not None:
        np.save(kl_out, kl_tokens)
    return {"n": len(chunk) - 1, "nll": float(nll), "kl": float(kl_tokens.sum(dtype=np.float64)),
            "top1": int(top1), "max_vocab": vocab}
