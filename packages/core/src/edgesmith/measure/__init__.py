"""Measuring: speed (``edgesmith bench``) and quality (``edgesmith eval``).

Every artifact is measured in its own worker process (the jobs of
:mod:`edgesmith.measure.worker`, run by :mod:`edgesmith.worker`) through the
backend's load operation, so each backend
gets the same definitions (docs/measuring.md) and one crash cannot end a run.
Importing this package is light; numpy and the backends load inside workers.
"""
