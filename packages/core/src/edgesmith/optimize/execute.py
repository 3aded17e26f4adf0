"""Running a plan's steps, reusing every step that is already done.

A step is done when its folder holds a manifest written by the same backend
for the same operation and parameters, from a source with the content hash the
source has now. Anything else in the folder (an older plan, a changed source)
is replaced. An interrupted step leaves no folder behind (the core writes to a
temporary sibling and renames it when complete), so a rerun simply does it.
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import api
from ..manifest import read_manifest
from ..util import content_hash
from .plan import Plan, Step

Say = Callable[[str], None]


def _json(v: Any) -> Any:
    return json.loads(json.dumps(v, default=str))


def expected_parameters(step: Step) -> dict[str, Any]:
    c = step.call
    if step.op == "convert":
        return api.convert_parameters(c["to"], c.get("options") or {})
    if step.op == "quantize":
        kw = {k: v for k, v in c.items() if k != "options"}
        return api.quantize_parameters(api.quant_spec(**kw), c.get("options") or {})
    return api.compile_parameters(c["device"], c.get("options") or {})


class Hashes:
    """Content hashes of step sources, read from manifests where written."""

    def __init__(self) -> None:
        self._seen: dict[Path, str] = {}

    def __call__(self, path: Path) -> str:
        path = path.resolve()
        if path not in self._seen:
            m = read_manifest(path) if path.is_dir() else None
            self._seen[path] = (m or {}).get("content_hash") or content_hash(path)
        return self._seen[path]


def stale_reason(step: Step, out: Path, source: Path, hashes: Hashes) -> str | None:
    """``None`` when ``out`` holds this step's finished result, else why not."""
    m = read_manifest(out) if out.is_dir() else None
    if m is None:
        return "not done yet"
    if (m.get("backend") or {}).get("name") != step.backend:
        return f"made by {(m.get('backend') or {}).get('name')}, not {step.backend}"
    op = m.get("operation") or {}
    if op.get("name") != step.op or _json(op.get("parameters")) != _json(expected_parameters(step)):
        return "its parameters changed"
    if (m.get("parent") or {}).get("content_hash") != hashes(source):
        return "its source changed"
    return None


def run_step(step: Step, out: Path, source: Path, hashes: Hashes, *, threads: int | None,
             trust_remote_code: bool, progress: Callable[..., None] | None) -> tuple[str, float]:
    """Do one step (or find it done); returns (``"reused"`` or ``"done"``, seconds)."""
    why = stale_reason(step, out, source, hashes)
    if why is None:
        return "reused", 0.0
    t0 = time.perf_counter()
    common: dict[str, Any] = {"backend": step.backend, "force": out.exists(), "threads": threads,
                              "progress": progress}
    c = step.call
    if step.op == "convert":
        api.convert(source, c["to"], out, options=c.get("options") or {},
                    trust_remote_code=trust_remote_code, **common)
    elif step.op == "quantize":
        api.quantize(source, out, trust_remote_code=trust_remote_code, **c, **common)
    else:
        api.compile(source, c["device"], out, options=c.get("options") or {}, **common)
    return "done", time.perf_counter() - t0


def describe(exc: BaseException) -> str:
    """``Type: first line of the message``, for a failure recorded on a step or target."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def keep_traceback(root: Path, name: str, exc: BaseException) -> Path:
    """Write ``exc``'s traceback under ``root/.optimize``; the log's path."""
    log = root / ".optimize" / f"{name.replace('/', '-')}-failed.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("".join(traceback.format_exception(exc)))
    return log


def run_all(plan: Plan, root: Path, say: Say, *, threads: int | None = None,
            trust_remote_code: bool = False, progress: Callable[..., None] | None = None
            ) -> dict[str, dict[str, Any]]:
    """Every step in plan order; returns a record per step key (status, seconds, error).

    A step that fails, for any reason, is recorded with its reason (a traceback
    log for an unexpected exception) and the steps that need its output are
    skipped; the other targets go on. Ctrl-C stops everything (the step under
    way leaves nothing behind).
    """
    from ..errors import EdgesmithError

    hashes = Hashes()
    records: dict[str, dict[str, Any]] = {}
    total = len(plan.steps)
    for n, step in enumerate(plan.steps.values(), 1):
        out = root / step.key
        source = plan.model if step.source == "model" else root / step.source
        label = f"[{n}/{total}] {step.key}: {step.describe()}"
        if step.source in records and records[step.source]["status"] in ("failed", "skipped"):
            say(f"{label} — skipped: {step.source} did not finish")
            records[step.key] = {"status": "skipped", "seconds": 0.0,
                                 "error": f"its source {step.source} did not finish"}
            continue
        why = stale_reason(step, out, source, hashes)
        if why is None:
            say(f"{label} — reused (finished earlier)")
            records[step.key] = {"status": "reused", "seconds": 0.0}
            continue
        say(f"{label} — {'redoing: ' + why if why != 'not done yet' else 'running'}")
        try:
            status, seconds = run_step(step, out, source, hashes, threads=threads,
                                       trust_remote_code=trust_remote_code, progress=progress)
        except EdgesmithError as exc:
            say(f"{label} — failed: {exc}")
            records[step.key] = {"status": "failed", "seconds": 0.0, "error": str(exc)}
            continue
        except Exception as exc:  # noqa: BLE001 - a vendor bug in one step must not end the run
            reason = f"internal error in the backend: {describe(exc)}"
            log = keep_traceback(root, step.key, exc)
            say(f"{label} — failed: {reason} (traceback: {log})")
            records[step.key] = {"status": "failed", "seconds": 0.0, "error": reason, "log": str(log)}
            continue
        say(f"{label} — done in {seconds:.1f} s")
        records[step.key] = {"status": status, "seconds": round(seconds, 2)}
    return records
