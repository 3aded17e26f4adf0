"""Vendor-side loops of benchmarks/speed_truth.py, one module per stack.

Each runs in that stack's own environment as
``python -P -m speed_truth_vendor.STACK ...`` (``-P`` and PYTHONPATH=benchmarks,
so a module named like its vendor package, ``mlx`` or ``openvino``, does not
shadow it) and uses only the vendor's API: no edgesmith import. They read the
artifact as the vendor's loader does and time it the vendor's own way.
"""
