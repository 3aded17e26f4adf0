"""Picking the next token from logits, as every QNN runner does it."""

from __future__ import annotations

import numpy as np

from edgesmith.types import RunRequest


def pick(logits: np.ndarray, request: RunRequest, rng: np.random.Generator) -> int:
    """Greedy at temperature 0, else top-k / top-p sampling."""
    if request.temperature <= 0:
        return int(np.argmax(logits))
    z = logits / request.temperature
    if request.top_k and request.top_k < z.size:
        cut = np.partition(z, -request.top_k)[-request.top_k]
        z = np.where(z < cut, -np.inf, z)
    p = np.exp(z - z.max())
    p /= p.sum()
    if request.top_p < 1.0:
        order = np.argsort(-p)
        keep = np.cumsum(p[order]) - p[order] < request.top_p
        mask = np.zeros_like(p, bool)
        mask[order[keep]] = True
        p = np.where(mask, p, 0.0)
        p /= p.sum()
    return int(rng.choice(p.size, p=p))
