"""``edgesmith optimize``: from one model to the best artifact for each target device.

Importing the package is cheap (the CLI imports its command at start-up); the
job's modules load when it runs.
"""

from __future__ import annotations

from typing import Any


def optimize(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """See :func:`edgesmith.optimize.job.optimize`."""
    from .job import optimize as run

    return run(*args, **kwargs)
