"""Test kit for edgesmith and its backends.

- :func:`tiny_checkpoint` writes a tiny, valid Hugging Face causal LM;
  :func:`bigram_checkpoint` gives one predictable text structure.
- :mod:`edgesmith.testing.conformance` holds the shared backend checks.
- :mod:`edgesmith.testing.fixtures` is a pytest plugin with fixtures that
  build (and cache per session) tiny checkpoints.
"""

from .tiny import ARCHITECTURES, CHAT_TEMPLATE, bigram_checkpoint, tiny_checkpoint, train_tokenizer

__all__ = ["ARCHITECTURES", "CHAT_TEMPLATE", "bigram_checkpoint", "tiny_checkpoint", "train_tokenizer"]
