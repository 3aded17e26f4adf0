"""The Olive backend's vendor patches, as records (see :mod:`edgesmith.patches`).

Each names the upstream symbol it replaces, the version range it was written
and tested for, what goes wrong without it (measured) and where upstream
tracks it. The fix code lives in :mod:`.workarounds` and :mod:`.offline`;
:func:`for_passes` picks what a workflow needs and
``workflow.run_workflow`` applies it for that run only. ``olive run --config
olive_config.json`` outside edgesmith gets none of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from edgesmith.patches import Patch

from . import offline, workarounds

TELEMETRY = Patch(
    name="olive-telemetry-inert",
    symbol="olive.telemetry.telemetry:Telemetry._instance",
    distribution="olive-ai",
    versions="==0.13.*",
    symptom="Olive reads OLIVE_DISABLE_TELEMETRY only after its telemetry singleton has queued a "
            "heartbeat (device id, OS) for upload and written a device-id file, so every process "
            "running an Olive job would report itself once despite the switch",
    scope=offline.inert_telemetry,
)

ROPE_THETA = Patch(
    name="genai-builder-rope-theta",
    symbol="onnxruntime_genai.models.builder:AutoConfig",
    distribution="onnxruntime-genai",
    versions="==0.11.*",
    symptom="with transformers 5 configs (rope_theta only under rope_parameters) the GenAI model "
            "builder finds no config.rope_theta and silently bakes RoPE caches for theta 10000: "
            "plausible answers that worsen with position (SmolLM2-135M, theta 100000: perplexity "
            "35.0 instead of 29.9 on 256-token windows); Gemma 3 (per-layer-type rope_parameters) "
            "fails on the missing rope_local_base_freq; Llama 3 scaling is computed for the whole "
            "context instead of original_max_position_embeddings (tiny Llama 3.2: top-1 0.83, KL 0.2)",
    scope=workarounds.builder_reads_rope_theta,
    upstream="https://github.com/microsoft/onnxruntime-genai/pull/2311",
)

GEMMA3_LINEAR_ROPE = Patch(
    name="genai-builder-gemma3-linear-rope",
    symbol="onnxruntime_genai.models.builder:Gemma3Model.make_rotary_embedding_multi_cache",
    distribution="onnxruntime-genai",
    versions="==0.11.*",
    symptom="Gemma 3 4B/12B/27B scale the full-attention layers' RoPE positions by 1/8 (linear, factor "
            "8); the builder has one position scale for both cos/sin caches and bakes no scaling, so "
            "the bundle computes another model (tiny Gemma 3 with the 4B's settings: top-1 agreement "
            "0.64, mean KL 0.69); the replacement scales the full-attention cache only",
    scope=workarounds.gemma3_scales_full_attention_only,
)

HQQ_LAYOUT = Patch(
    name="olive-hqq-matmulnbits-layout",
    symbol="olive.passes.onnx.hqq_quantization:OnnxHqqQuantization._quantize_internal_numpy",
    distribution="olive-ai",
    versions="==0.13.*",
    symptom="the HQQ pass quantizes the [K, N] MatMul weight untransposed and packs along N, so "
            "MatMulNBits dequantizes weights unrelated to the original ones (SmolLM2-135M: "
            "perplexity 1e28); the replacement transposes first, as ONNX Runtime's HQQ quantizer does",
    scope=workarounds.hqq_packs_like_matmulnbits,
    upstream="https://github.com/microsoft/Olive/pull/2589",
)

#: Every patch of this backend, for listing.
PATCHES = (TELEMETRY, ROPE_THETA, GEMMA3_LINEAR_ROPE, HQQ_LAYOUT)


def for_passes(passes: Mapping[str, Mapping[str, Any]]) -> list[Patch]:
    """The patches a workflow with these passes needs (telemetry always)."""
    types = {p.get("type") for p in passes.values()}
    chosen = [TELEMETRY]
    if "ModelBuilder" in types:
        chosen += [ROPE_THETA, GEMMA3_LINEAR_ROPE]
    if "OnnxHqqQuantization" in types:
        chosen.append(HQQ_LAYOUT)
    return chosen
