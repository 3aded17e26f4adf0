"""edgesmith: one CLI and Python API over the edge-inference stacks.

Backends register through the entry-point group ``edgesmith`` and describe
themselves through the hooks in :mod:`edgesmith.hookspecs` (marked with
:data:`hookimpl`): a :class:`BackendInfo` whose :class:`Operation` records
name the handler, formats and typed :class:`Option` settings of each job.
The API functions are imported lazily so ``import edgesmith`` stays cheap.
"""

from __future__ import annotations

from typing import Any

from .errors import BackendError, EdgesmithError, UnsupportedError, UserError
from .hookspecs import hookimpl
from .options import Option
from .runner import Runner
from .types import Artifact, BackendInfo, Context, Operation, QuantSpec, RunRequest, RunResult, Timings

__version__ = "0.1.0"

_API = ("backends", "inspect", "convert", "quantize", "compile", "run", "load")

__all__ = [
    "Artifact",
    "BackendError",
    "BackendInfo",
    "Context",
    "EdgesmithError",
    "Operation",
    "Option",
    "QuantSpec",
    "RunRequest",
    "RunResult",
    "Runner",
    "Timings",
    "UnsupportedError",
    "UserError",
    "hookimpl",
    *_API,
]


def __getattr__(name: str) -> Any:
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'edgesmith' has no attribute {name!r}")
