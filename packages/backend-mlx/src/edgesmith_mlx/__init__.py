"""edgesmith backend for Apple MLX through mlx-lm.

Importing this package (or :mod:`edgesmith_mlx.plugin`) never imports MLX;
the stack is loaded only inside the functions that convert, quantize or run.
"""

__version__ = "0.1.0"
