"""Measuring: speed (``edgesmith bench``) and quality (``edgesmith eval``).

Every artifact is measured in its own worker process
(:mod:`edgesmith.measure.worker`) through the ``run`` hook, so each backend
gets the same definitions (docs/measuring.md) and one crash cannot end a run.
Importing this package is light; numpy and the backends load inside workers.
"""
