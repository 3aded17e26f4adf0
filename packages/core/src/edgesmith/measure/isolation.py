"""Running one measuring worker per artifact (see :mod:`edgesmith.worker`).

The worker runs in the environment of the backend that loads the artifact:
this one's packages, or a registered backend environment's own Python (so
its timings and memory are the backend's, with no process in between). It
uses the same thread count, also through the usual OpenMP/BLAS variables so
stacks that read those agree with the ones that take ``threads`` from edgesmith.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import worker


def run_worker(job: dict[str, Any], on_progress: Callable[[str], None] | None = None,
               timeout: float | None = None) -> dict[str, Any]:
    """Run ``job`` in a fresh worker; ``{"ok": True, "result": ...}`` or
    ``{"ok": False, "kind": "user"|"internal"|"crash"|"timeout", "error": ..., "log": ...}``."""
    python, env, job = _where(job)
    answer = worker.run("edgesmith.measure.worker:handle", job, python=python, env=env,
                        threads=job.get("threads"), on_progress=on_progress, timeout=timeout)
    if answer.ok:
        return {"ok": True, "result": answer.result}
    out = {"ok": False, "kind": answer.kind, "error": answer.error, "log": answer.log}
    if answer.kind in ("crash", "timeout"):
        out["returncode"] = answer.returncode
    return out


def _where(job: dict[str, Any]) -> tuple[str | None, dict[str, str] | None, dict[str, Any]]:
    """The interpreter and process environment for ``job``'s artifact, and the
    job with its backend named (so the worker picks the one chosen here)."""
    from .. import environments, formats
    from ..architectures import model_type
    from ..dispatch import choose
    from ..errors import UserError
    from ..plugins import get_manager

    try:
        art = formats.detect(job["artifact"])
        choice = choose(get_manager(), "load", art.format, backend=job.get("backend"),
                        architecture=model_type(art))
    except UserError:
        return None, None, job  # the worker says the same, as the job's own error
    if choice.record.environment is None:
        return None, None, job
    return (str(choice.record.environment.python), environments.child_env(job.get("threads")),
            {**job, "backend": choice.name})
