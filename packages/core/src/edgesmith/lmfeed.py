"""The input arrays of one token sequence for an exported language model or
text encoder (ONNX Runtime sessions, OpenVINO IR): ``input_ids`` and whichever
of ``attention_mask``, ``position_ids``, ``token_type_ids`` and ``beam_idx``
the graph declares, batch 1."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

#: The inputs :func:`lm_feed` fills.
LM_INPUTS = ("input_ids", "attention_mask", "position_ids", "token_type_ids", "beam_idx")


def lm_feed(ids: Sequence[int], names: Iterable[str], *, width: int | None = None, pad_id: int = 0,
            type_ids: Sequence[int] | None = None,
            dtypes: Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
    """Arrays of shape ``[1, width]`` (``beam_idx``: ``[1]``) for ``ids``.

    ``names`` are the graph's inputs: ``input_ids`` is always made, the other
    :data:`LM_INPUTS` when named, the rest left to the caller. With ``width``
    the sequence is right-padded with ``pad_id`` and masked out there;
    ``position_ids`` count 0..width-1 and ``token_type_ids`` are ``type_ids``
    (zeros by default, and on the padding). Arrays are int64 (``beam_idx``
    int32, the beam of each batch row) unless ``dtypes`` names another.
    """
    import numpy as np

    ids = [int(t) for t in ids]
    n = len(ids)
    width = n if width is None else width
    if width < n:
        raise ValueError(f"{n} tokens do not fit a width of {width}")
    pad = width - n
    types = [int(t) for t in type_ids] if type_ids is not None else [0] * n
    values = {
        "input_ids": ids + [pad_id] * pad,
        "attention_mask": [1] * n + [0] * pad,
        "position_ids": list(range(width)),
        "token_type_ids": types + [0] * pad,
    }
    want = set(names) | {"input_ids"}
    dtypes = dtypes or {}
    feed = {name: np.asarray([values[name]], dtype=dtypes.get(name, np.int64))
            for name in LM_INPUTS[:4] if name in want}
    if "beam_idx" in want:
        feed["beam_idx"] = np.zeros(1, dtype=dtypes.get("beam_idx", np.int32))
    return feed
