"""Scoped fixes for upstream bugs that otherwise yield wrong models without an error.

Their records (upstream symbol, version range, measured symptom, upstream
reference) are in :mod:`.patches`; each is applied only while an Olive
workflow that needs it runs (``workflow.run_workflow``) and undone
afterwards. ``olive run --config olive_config.json`` outside edgesmith does
not get them.

RoPE theta (onnxruntime-genai 0.11 builder + transformers 5):
transformers 5 moves ``rope_theta`` from the config's top level into
``config.rope_parameters`` and no longer exposes it as an attribute. The
builder reads ``config.rope_theta`` and, finding none, silently bakes RoPE
caches for theta 10000 into the graph. For a model trained with another theta
(SmolLM2: 100000, Qwen2: 1000000) the bundle still writes plausible short
answers but predicts worse with every position (SmolLM2-135M: perplexity 35.0
instead of 29.9 on 256-token windows). While the builder runs, its
``AutoConfig`` hands back configs with the attribute restored.

HQQ weight layout (Olive 0.13 ``OnnxHqqQuantization``):
MatMulNBits wants, for each output column n, blocks of ``block_size``
consecutive weights along K, packed two per byte along K. Olive's pass
quantizes the ``[K, N]`` MatMul weight untransposed (its groups are strided
elements) and packs along N, so the dequantized weights are unrelated to the
original ones (SmolLM2-135M: perplexity 1e28). ONNX Runtime's own HQQ
quantizer, which the pass was derived from, transposes first; the replacement
below does the same with the pass's own HQQ solver.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


def restore_rope_theta(config: Any) -> Any:
    """Give ``config`` (and a nested ``text_config``) a top-level ``rope_theta`` if it lacks one."""
    for cfg in (config, getattr(config, "text_config", None)):
        if cfg is None or getattr(cfg, "rope_theta", None) is not None:
            continue
        params = getattr(cfg, "rope_parameters", None)
        # Per-layer-type dicts ({"full_attention": {...}, ...}) carry no single theta.
        if isinstance(params, dict) and isinstance(params.get("rope_theta"), (int, float)):
            cfg.rope_theta = float(params["rope_theta"])
    return config


class _AutoConfig:
    """Stands in for ``transformers.AutoConfig`` inside the builder module."""

    def __init__(self, real: Any):
        self._real = real

    def from_pretrained(self, *args: Any, **kwargs: Any) -> Any:
        return restore_rope_theta(self._real.from_pretrained(*args, **kwargs))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


@contextlib.contextmanager
def builder_reads_rope_theta() -> Iterator[None]:
    """For the block, the GenAI builder sees ``rope_theta`` on transformers 5 configs."""
    import onnxruntime_genai.models.builder as builder

    real = builder.AutoConfig
    builder.AutoConfig = _AutoConfig(real)
    try:
        yield
    finally:
        builder.AutoConfig = real


def _hqq_matmulnbits_arrays(self: Any, b_ndarray: Any, block_size: int, axis: int) -> tuple[Any, Any, Any]:
    """HQQ-quantize a ``[K, N]`` MatMul weight into MatMulNBits' ``[N, K/block, block/2]`` layout."""
    import torch

    weight = torch.from_numpy(b_ndarray).T.contiguous()  # [N, K]: one row per output column
    # axis=1 groups ``block_size`` consecutive K values of one column.
    q, scales, zeros = self._quantize_internal(weight, group_size=block_size, axis=1)
    q = q.contiguous()  # [N, K padded to whole blocks]
    packed = (q[:, 0::2] | (q[:, 1::2] << 4)).to(torch.uint8)
    n, k_padded = q.shape
    packed = packed.reshape(n, k_padded // block_size, block_size // 2)
    return packed.numpy(), scales.contiguous().reshape(-1).numpy(), zeros.contiguous().reshape(-1).numpy()


@contextlib.contextmanager
def hqq_packs_like_matmulnbits() -> Iterator[None]:
    """For the block, Olive's HQQ pass writes weights in the layout MatMulNBits reads."""
    from olive.passes.onnx.hqq_quantization import OnnxHqqQuantization

    real = OnnxHqqQuantization.__dict__["_quantize_internal_numpy"]
    OnnxHqqQuantization._quantize_internal_numpy = _hqq_matmulnbits_arrays
    try:
        yield
    finally:
        OnnxHqqQuantization._quantize_internal_numpy = real
