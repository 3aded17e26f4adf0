"""Log-probabilities from logits, the same arithmetic for every backend."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np


def log_softmax(logits: Any, axis: int = -1, dtype: Any = "float32") -> np.ndarray:
    """``log(softmax(logits))`` along ``axis``, computed in float64 (the largest
    logit is subtracted first, so large logits cannot overflow) and returned as
    ``dtype``."""
    import numpy as np

    x = np.asarray(logits, dtype=np.float64)
    shifted = x - x.max(axis=axis, keepdims=True)
    out = shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))
    return out.astype(dtype, copy=False)
