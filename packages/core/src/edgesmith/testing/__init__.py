"""Test kit for edgesmith and its backends.

- :func:`tiny_checkpoint` writes a tiny, valid Hugging Face causal LM;
  :func:`bigram_checkpoint` gives one predictable text structure.
- :mod:`edgesmith.testing.archs` writes tiny checkpoints faithful to the
  published configs of Llama 3.2, Qwen2.5, Qwen3, Gemma 3, Phi-3.5,
  Phi-4-mini and SmolLM2 (:func:`~edgesmith.testing.archs.arch_checkpoint`);
  :mod:`edgesmith.testing.fidelity` holds a converted model to transformers
  (top-1, KL, greedy tokens, tokenizer).
- :mod:`edgesmith.testing.conformance` holds the shared backend checks.
- :mod:`edgesmith.testing.fixtures` is a pytest plugin with fixtures that
  build (and cache per session) tiny checkpoints (``tiny_model``, ``arch_model``).
"""

from .tiny import ARCHITECTURES, CHAT_TEMPLATE, bigram_checkpoint, tiny_checkpoint, train_tokenizer

__all__ = ["ARCHITECTURES", "CHAT_TEMPLATE", "bigram_checkpoint", "tiny_checkpoint", "train_tokenizer"]
