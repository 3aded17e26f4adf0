"""Running one worker process per artifact and reading its answer.

The worker sees the same packages as this process (its ``sys.path`` is
passed on, so a backend found here is found there) and uses the same thread
count, also through the usual OpenMP/BLAS variables so stacks that read
those agree with the ones that take ``threads`` from edgesmith.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from typing import Any

from .. import childproc

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS")


def worker_env(threads: int | None) -> dict[str, str]:
    env = dict(os.environ)
    paths = [p for p in dict.fromkeys(sys.path) if p and os.path.exists(p)]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    if threads:
        env.update({v: str(threads) for v in THREAD_VARS})
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"the worker process was killed by {name}"
    return f"the worker process exited with code {code} without an answer"


def run_worker(job: dict[str, Any], on_progress: Callable[[str], None] | None = None,
               timeout: float | None = None) -> dict[str, Any]:
    """Run ``job`` in a fresh worker; ``{"ok": True, "result": ...}`` or
    ``{"ok": False, "kind": "user"|"internal"|"crash"|"timeout", "error": ..., "log": ...}``."""
    with tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace") as log:
        proc = childproc.popen(
            [sys.executable, "-m", "edgesmith.measure.worker"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=log, text=True, env=worker_env(job.get("threads")),
        )
        assert proc.stdin and proc.stdout
        proc.stdin.write(json.dumps(job))
        proc.stdin.close()
        answer: dict[str, Any] | None = None
        timer = None
        if timeout:
            import threading

            timer = threading.Timer(timeout, proc.kill)
            timer.start()
        try:
            for line in proc.stdout:
                try:
                    msg = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if msg.get("event") == "progress":
                    if on_progress:
                        on_progress(msg.get("message", ""))
                elif msg.get("event") in ("result", "error"):
                    answer = msg
            code = proc.wait()
        except BaseException:
            childproc.kill(proc)
            raise
        finally:
            if timer:
                timer.cancel()
        log.seek(0)
        tail = log.read()[-4000:]
    if answer and answer["event"] == "result":
        return {"ok": True, "result": answer["result"]}
    if answer:
        return {"ok": False, "kind": answer.get("kind", "internal"), "error": answer.get("message"),
                "log": tail}
    timed_out = timeout is not None and code == -signal.SIGKILL
    return {"ok": False, "kind": "timeout" if timed_out else "crash",
            "error": (f"no answer within {timeout:g} s; the worker was stopped" if timed_out
                      else _describe_exit(code)),
            "returncode": code, "log": tail}
