"""Running one measuring worker per artifact (see :mod:`edgesmith.worker`).

The worker sees the same packages as this process and uses the same thread
count, also through the usual OpenMP/BLAS variables so stacks that read
those agree with the ones that take ``threads`` from edgesmith.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import worker


def run_worker(job: dict[str, Any], on_progress: Callable[[str], None] | None = None,
               timeout: float | None = None) -> dict[str, Any]:
    """Run ``job`` in a fresh worker; ``{"ok": True, "result": ...}`` or
    ``{"ok": False, "kind": "user"|"internal"|"crash"|"timeout", "error": ..., "log": ...}``."""
    answer = worker.run("edgesmith.measure.worker:handle", job, threads=job.get("threads"),
                        on_progress=on_progress, timeout=timeout)
    if answer.ok:
        return {"ok": True, "result": answer.result}
    out = {"ok": False, "kind": answer.kind, "error": answer.error, "log": answer.log}
    if answer.kind in ("crash", "timeout"):
        out["returncode"] = answer.returncode
    return out
