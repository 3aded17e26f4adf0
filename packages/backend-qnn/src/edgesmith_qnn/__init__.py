"""edgesmith backend for Qualcomm QNN through ONNX Runtime's QNN execution provider.

Heavy modules (onnxruntime, onnx) are imported only inside the functions that
need them; importing this package or its plugin stays cheap.
"""

__version__ = "0.1.0"
