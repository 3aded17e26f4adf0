"""edgesmith backend for Intel OpenVINO (runtime, NNCF, openvino-genai, optimum-intel).

Importing this package (or :mod:`edgesmith_openvino.plugin`) imports none of
the vendor stack; each operation imports what it needs when it runs.
"""

__version__ = "0.1.0"
