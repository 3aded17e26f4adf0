"""LongRoPE as transformers computes it, for Phi-3 / Phi-3.5 / Phi-4 models run by mlx-lm.

LongRoPE models carry two tables of per-frequency divisors: ``short_factor``
for sequences up to ``original_max_position_embeddings`` (4096) and
``long_factor`` beyond. transformers picks the table by sequence length;
mlx-lm 0.32's ``SuScaledRoPE`` always uses ``long_factor``. Where the tables
differ (Phi-3.5-mini: short 1.0-2.8, long 1.1-64.8) every prompt shorter than
4096 tokens runs with the wrong positions: measured on a tiny Phi-3.5, top-1
agreement with transformers 0.04 instead of 1.0. Phi-4-mini ships equal tables
and is unaffected.

:func:`use_short_factor` swaps each ``SuScaledRoPE`` of a loaded model for
:class:`LongRoPE`, which chooses the table as transformers does (by the
position of the last token of the call). The saved MLX directory is unchanged:
``mlx_lm.load`` elsewhere still gets mlx-lm's own behaviour.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def use_short_factor(model: Any, config: Mapping[str, Any]) -> int:
    """Replace the ``SuScaledRoPE`` modules of ``model`` whose config has distinct
    short and long factors; how many were replaced."""
    from mlx_lm.models.rope_utils import SuScaledRoPE

    scaling = config.get("rope_scaling") or {}
    if not isinstance(scaling, Mapping) or "short_factor" not in scaling or "long_factor" not in scaling:
        return 0
    if list(scaling["short_factor"]) == list(scaling["long_factor"]):
        return 0
    replaced = 0
    for _, module in model.named_modules():
        for name, child in list(module.children().items()):
            if isinstance(child, SuScaledRoPE):
                setattr(module, name, LongRoPE(child, config, scaling))
                replaced += 1
    return replaced


def _module_base() -> Any:
    import mlx.nn as nn

    return nn.Module


class LongRoPE(_module_base()):  # type: ignore[misc]
    """``SuScaledRoPE`` with transformers' choice of factor table."""

    def __init__(self, vendor: Any, config: Mapping[str, Any], scaling: Mapping[str, Any]):
        import mlx.core as mx

        super().__init__()
        self.dim = vendor.dim
        self.original = int(config.get("original_max_position_embeddings")
                            or scaling.get("original_max_position_embeddings") or 4096)
        base = float(config.get("rope_theta") or 10000.0)
        freqs = base ** (mx.arange(0, self.dim, 2, dtype=mx.float32) / self.dim)
        self._short = mx.array(scaling["short_factor"], dtype=mx.float32) * freqs
        self._long = mx.array(scaling["long_factor"], dtype=mx.float32) * freqs
        self._scale = vendor._scale  # the attention factor, as transformers applies it to both tables

    def __call__(self, x: Any, offset: Any = 0) -> Any:
        import mlx.core as mx

        last = (offset if isinstance(offset, int) else int(mx.max(offset).item())) + x.shape[-2]
        freqs = self._long if last > self.original else self._short
        return mx.fast.rope(x.at[..., : self.dim].multiply(self._scale), self.dim, traditional=False,
                            base=None, scale=1.0, offset=offset, freqs=freqs)
