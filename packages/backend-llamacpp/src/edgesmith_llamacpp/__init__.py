"""edgesmith backend for llama.cpp (GGUF)."""

__version__ = "0.1.0"
