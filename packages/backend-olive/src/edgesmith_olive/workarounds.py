"""Scoped fixes for upstream bugs that otherwise yield wrong models without an error.

Their records (upstream symbol, version range, measured symptom, upstream
reference) are in :mod:`.patches`; each is applied only while an Olive
workflow that needs it runs (``workflow.run_workflow``) and undone
afterwards. ``olive run --config olive_config.json`` outside edgesmith does
not get them.

RoPE settings (onnxruntime-genai 0.11 builder + transformers 5):
transformers 5 moves ``rope_theta`` from the config's top level into
``config.rope_parameters`` and no longer exposes it as an attribute. The
builder reads ``config.rope_theta`` and, finding none, silently bakes RoPE
caches for theta 10000 into the graph. For a model trained with another theta
(SmolLM2: 100000, Qwen2: 1000000) the bundle still writes plausible short
answers but predicts worse with every position (SmolLM2-135M: perplexity 35.0
instead of 29.9 on 256-token windows). Gemma 3's per-layer-type parameters
leave no ``rope_local_base_freq`` (the builder stops with an AttributeError),
and Llama 3's scaling is computed for ``original_max_position_embeddings``,
which the builder finds only as a config attribute (tiny Llama 3.2: top-1
agreement with transformers 0.83, mean KL 0.2). While the builder runs, its
``AutoConfig`` hands back configs with these attributes restored.

Gemma 3's linear RoPE scaling (onnxruntime-genai 0.11 builder): the 4B and
larger scale the full-attention layers' positions by 1/8 (``rope_type: linear``,
factor 8); the builder has only one position scale for both of Gemma 3's
cos/sin caches and applies it to neither unless ``rope_position_scale`` is set
(tiny Gemma 3 with the 4B's settings: top-1 agreement 0.64, mean KL 0.69).
The replacement builds the full-attention cache with the scale and the
sliding-window cache (its own base) without.

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
    """Give ``config`` (and a nested ``text_config``) the RoPE attributes the builder reads
    and transformers 5 keeps only in ``rope_parameters``: ``rope_theta``; for per-layer-type
    parameters (Gemma 3) the full-attention layers' ``rope_theta`` and the sliding layers'
    ``rope_local_base_freq``; and ``original_max_position_embeddings`` (Llama 3 scaling)."""
    for cfg in (config, getattr(config, "text_config", None)):
        if cfg is None:
            continue
        params = getattr(cfg, "rope_parameters", None)
        if not isinstance(params, dict):
            continue
        full = params
        if isinstance(params.get("full_attention"), dict):
            full = params["full_attention"]
            local = params.get("sliding_attention")
            if getattr(cfg, "rope_local_base_freq", None) is None and isinstance(local, dict) \
                    and isinstance(local.get("rope_theta"), (int, float)):
                cfg.rope_local_base_freq = float(local["rope_theta"])
        if getattr(cfg, "rope_theta", None) is None and isinstance(full.get("rope_theta"), (int, float)):
            cfg.rope_theta = float(full["rope_theta"])
        # The builder looks for it as an attribute of the rope_scaling dict (never true) and
        # otherwise rescales Llama 3 frequencies for the full context (131072, not 8192).
        original = full.get("original_max_position_embeddings")
        if getattr(cfg, "original_max_position_embeddings", None) is None and isinstance(original, int):
            cfg.original_max_position_embeddings = original
        # Linear scaling (Gemma 3 4B and larger: factor 8 on the full-attention layers) is the
        # builder's position scale; without it the builder ignores the scaling.
        if full.get("rope_type") == "linear" and isinstance(full.get("factor"), (int, float)) \
                and getattr(cfg, "rope_position_scale", None) is None:
            cfg.rope_position_scale = 1.0 / float(full["factor"])
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


def _gemma3_multi_cache(cls: type) -> Any:
    """``Gemma3Model.make_rotary_embedding_multi_cache`` with the position scale (linear RoPE
    scaling) on the full-attention cache only, as transformers applies it."""

    def make_rotary_embedding_multi_cache(self: Any) -> None:
        base = super(cls, self)
        self.cos_cache_global_name, self.sin_cache_global_name = "cos_cache_global", "sin_cache_global"
        base.make_rotary_embedding_caches(cos_cache_name=self.cos_cache_global_name,
                                          sin_cache_name=self.sin_cache_global_name)
        self.rope_attrs["create_caches"] = True
        self.rope_attrs["theta"] = self.rope_local_theta
        self.rope_attrs["position_scale"] = 1  # sliding layers: their own base, no scaling
        self.cos_cache_local_name, self.sin_cache_local_name = "cos_cache_local", "sin_cache_local"
        base.make_rotary_embedding_caches(cos_cache_name=self.cos_cache_local_name,
                                          sin_cache_name=self.sin_cache_local_name)

    return make_rotary_embedding_multi_cache


@contextlib.contextmanager
def gemma3_scales_full_attention_only() -> Iterator[None]:
    """For the block, the GenAI builder's Gemma 3 applies linear RoPE scaling to the
    full-attention layers only."""
    # The builder imports its classes as the top-level package ``builders`` (its folder is
    # put on sys.path), so the class it instantiates is the one its module holds.
    import onnxruntime_genai.models.builder as builder

    cls = builder.Gemma3Model
    real = cls.__dict__["make_rotary_embedding_multi_cache"]
    cls.make_rotary_embedding_multi_cache = _gemma3_multi_cache(cls)
    try:
        yield
    finally:
        cls.make_rotary_embedding_multi_cache = real


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
