"""The hooks a backend implements. Every name has the prefix ``edgesmith_``.

The core calls ``edgesmith_backend`` on every registered plugin to learn what
it can do, then calls one operation hook on the one backend it chose (or the
user named). Operation hooks return ``None`` for "not mine"; the core turns
"nobody took it" into one error that lists what installed backends can do.

Output protocol for convert/quantize/compile: ``output`` is an empty,
temporary directory. Write every file into it and return an
:class:`~edgesmith.types.Artifact` whose ``path`` is ``output``. The core
writes ``edgesmith.json`` and renames the directory into place only after the
hook returns, so a failed or interrupted job never looks complete.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from .runner import Runner
    from .types import Artifact, BackendInfo, Context, QuantSpec

PROJECT = "edgesmith"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def edgesmith_backend() -> BackendInfo:
    """Describe this backend: name, version, capabilities, availability check.

    Must be cheap: no import of the vendor stack (``edgesmith backends`` calls
    it for every backend and must stay fast).
    """


@hookspec(firstresult=True)
def edgesmith_convert(
    source: Artifact, target: str, options: Mapping[str, str], output: Path, ctx: Context
) -> Artifact | None:
    """Convert ``source`` to format ``target`` into the directory ``output``.

    ``options`` holds ``--option KEY=VALUE`` settings and named flags such as
    ``dtype``. Unknown option keys must be rejected with a UserError.
    """


@hookspec(firstresult=True)
def edgesmith_quantize(
    source: Artifact, spec: QuantSpec, options: Mapping[str, str], output: Path, ctx: Context
) -> Artifact | None:
    """Quantize ``source`` as described by ``spec`` into ``output``.

    Map the common fields of ``spec`` to the stack's own flags; raise
    UnsupportedError naming any field that cannot be honoured.
    ``ctx.allow_requantize`` allows re-quantizing an already quantized model;
    refuse it otherwise with a UserError naming ``--allow-requantize``.
    """


@hookspec(firstresult=True)
def edgesmith_compile(
    source: Artifact, device: str, options: Mapping[str, str], output: Path, ctx: Context
) -> Artifact | None:
    """Compile ``source`` ahead of time for ``device`` (cpu, gpu, npu, auto)."""


@hookspec(firstresult=True)
def edgesmith_run(artifact: Artifact, options: Mapping[str, str], ctx: Context) -> Runner | None:
    """Load ``artifact`` and return a :class:`~edgesmith.runner.Runner`.

    The runner generates (streaming token by token), tokenizes and scores
    token ids to log-probabilities. Timings are measured by the Runner base
    class so that every backend uses the same definitions.
    """
