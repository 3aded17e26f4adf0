"""edgesmith backend for Microsoft Olive + ONNX Runtime GenAI.

Importing this package is cheap; Olive, ONNX Runtime and torch are imported
only inside the operations that need them.
"""

__version__ = "0.1.0"
