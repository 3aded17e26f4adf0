"""One protocol for running a function in a child Python process.

Used wherever edgesmith runs vendor code out of process: measuring (one
process per artifact, so its memory is its own and a segfault ends only it),
llama.cpp's converter (module-level state and ``sys.exit`` of its own), and
later a backend installed in another environment: ``python`` may be any
interpreter that has edgesmith installed.

- The parent sends one JSON job on the child's stdin: the function to call
  (``"package.module:function"``) and its payload.
- The child (``python -m edgesmith.worker``) calls ``function(payload)`` and
  answers with JSON lines on its own copy of stdout: ``progress`` events while
  it works (:func:`progress`), then one ``result`` or ``error``. Everything
  else written to stdout, by Python or by C code, goes to stderr, which the
  parent keeps in a log file whose tail explains a failure.
- The child dies with the parent (:mod:`edgesmith.childproc`); an interrupt
  or exception in the parent kills the child; ``tick`` lets the parent's
  caller run code (a progress bar that may raise KeyboardInterrupt) while
  it waits.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import attrs

from . import childproc
from .errors import BackendError, UserError

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS")
#: Characters of the child's log kept for an error report.
LOG_TAIL = 4000


@attrs.frozen
class Answer:
    """What a worker said: ``ok`` with ``result``, or ``kind`` (user, internal,
    crash, timeout) with a one-line ``error``; ``log`` is the tail of its stderr."""

    ok: bool
    result: Any = None
    kind: str | None = None
    error: str | None = None
    log: str = ""
    returncode: int | None = None

    def unwrap(self, what: str) -> Any:
        """The result, or the error raised as UserError (the user's to fix) or BackendError."""
        if self.ok:
            return self.result
        if self.kind == "user":
            raise UserError(self.error or f"{what} failed")
        raise BackendError(f"{what} failed: {self.error}")


def child_env(threads: int | None = None, *, same_environment: bool = True,
              extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a worker: this one, the thread count also in the usual
    OpenMP/BLAS variables, and (same environment) this process's import path."""
    env = dict(os.environ)
    if same_environment:
        paths = [p for p in dict.fromkeys(sys.path) if p and os.path.exists(p)]
        env["PYTHONPATH"] = os.pathsep.join(paths)
    else:
        # Another interpreter finds its own packages; this one's must not leak in.
        for var in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "__PYVENV_LAUNCHER__"):
            env.pop(var, None)
    if threads:
        env.update({v: str(threads) for v in THREAD_VARS})
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"the worker process was killed by {name}"
    return f"the worker process exited with code {code} without an answer"


def run(function: str, payload: Mapping[str, Any], *, python: str | None = None,
        env: Mapping[str, str] | None = None, threads: int | None = None,
        on_progress: Callable[[str], None] | None = None, tick: Callable[[], None] | None = None,
        timeout: float | None = None, log_path: Path | None = None,
        on_event: Callable[[Mapping[str, Any]], None] | None = None) -> Answer:
    """Call ``function(payload)`` in a fresh child process and wait for its answer.

    ``python`` is the interpreter (default: this one, with this import path).
    ``log_path`` keeps the child's stderr there; otherwise it is a temp file.
    ``on_event`` receives each whole progress event (its ``completed`` and
    ``total`` too), ``on_progress`` only its message.
    """
    same = python is None
    environ = dict(env) if env is not None else child_env(threads, same_environment=same)
    job = json.dumps({"function": function, "payload": dict(payload)})
    if log_path is not None:
        log: IO[str] = open(log_path, "w+", encoding="utf-8", errors="replace")  # noqa: SIM115
    else:
        log = tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace")  # noqa: SIM115
    with log:
        proc = childproc.popen([python or sys.executable, "-m", "edgesmith.worker"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=log, text=True, env=environ)
        assert proc.stdin and proc.stdout
        lines: queue.Queue[str | None] = queue.Queue()

        def read() -> None:
            assert proc.stdout
            for line in proc.stdout:
                lines.put(line)
            lines.put(None)

        reader = threading.Thread(target=read, name="edgesmith-worker-reader", daemon=True)
        answer: dict[str, Any] | None = None
        deadline = time.monotonic() + timeout if timeout else None
        timed_out = False
        try:
            proc.stdin.write(job)
            proc.stdin.close()
            reader.start()
            while True:
                if tick:
                    tick()
                if deadline and time.monotonic() > deadline:
                    timed_out = True
                    childproc.kill(proc)
                    break
                try:
                    line = lines.get(timeout=0.2)
                except queue.Empty:
                    continue
                if line is None:
                    break
                try:
                    msg = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if msg.get("event") == "progress":
                    if on_progress:
                        on_progress(msg.get("message", ""))
                    if on_event:
                        on_event(msg)
                elif msg.get("event") in ("result", "error"):
                    answer = msg
            code = proc.wait()
        except BaseException:
            childproc.kill(proc)
            raise
        log.flush()
        log.seek(0)
        tail = log.read()[-LOG_TAIL:]
    if answer and answer["event"] == "result":
        return Answer(True, result=answer.get("result"), log=tail, returncode=code)
    if answer:
        return Answer(False, kind=answer.get("kind", "internal"), error=answer.get("message"), log=tail,
                      returncode=code)
    if timed_out:
        return Answer(False, kind="timeout", error=f"no answer within {timeout:g} s; the worker was stopped",
                      log=tail, returncode=code)
    return Answer(False, kind="crash", error=describe_exit(code), log=tail, returncode=code)


# -- the child side -----------------------------------------------------------------

_out: IO[str] | None = None


def _send(event: str, **data: Any) -> None:
    if _out is None:  # called outside a worker (a function run in-process): nothing to tell
        return
    _out.write(json.dumps({"event": event, **data}, default=float) + "\n")
    _out.flush()


def progress(message: str, completed: float | None = None, total: float | None = None) -> None:
    """In a worker: tell the parent what is happening (a no-op elsewhere)."""
    _send("progress", message=message, completed=completed, total=total)


def _one_line(text: str, fallback: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[0] if lines else fallback


def take_stdout() -> IO[str]:
    """In a child: keep a private copy of stdout for the protocol and send
    everything else printed there (vendor banners, C-level prints) to stderr."""
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    import logging

    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="edgesmith: %(message)s")
    return out


def main() -> int:
    global _out
    childproc.watch_parent()
    _out = take_stdout()
    try:
        job = json.loads(sys.stdin.read())
        module, _, name = job["function"].partition(":")
        import importlib

        func = getattr(importlib.import_module(module), name)
        result = func(job["payload"])
        _send("result", result=result)
        return 0
    except Exception as exc:  # reported to the parent, which decides what it means
        traceback.print_exc(file=sys.stderr)
        kind = "user" if isinstance(exc, UserError) else "internal"
        message = str(exc) if kind == "user" else f"{type(exc).__name__}: {exc}"
        _send("error", kind=kind, message=_one_line(message, kind))
        return 1


if __name__ == "__main__":
    # Run as the imported module, not as __main__: the job's code calls
    # edgesmith.worker.progress, which must see the stream set up here.
    from edgesmith.worker import main as _main

    sys.exit(_main())
