"""edgesmith backend that runs Hugging Face checkpoints with transformers and torch.

Importing this package (or :mod:`edgesmith_transformers.plugin`) imports
neither torch nor transformers; only loading a model does.
"""

__version__ = "0.1.0"
