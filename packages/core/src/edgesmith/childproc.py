"""Child processes that die with their parent.

A worker left running after its parent was killed keeps writing into a
staging directory nobody will move into place, and holds memory and cores.
Two guards, both on by default for every worker edgesmith starts:

- on Linux the child asks the kernel for SIGKILL when its parent dies
  (``PR_SET_PDEATHSIG``), effective even while the child is busy in C code;
- everywhere, the child holds the read end of a pipe whose write end only the
  parent has: :func:`watch_parent`, called first thing in the child, exits
  when that pipe closes (the parent is gone, however it ended).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from typing import Any

PARENT_FD_VAR = "EDGESMITH_PARENT_FD"
_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:  # runs in the child between fork and exec
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except Exception:  # noqa: BLE001 - the pipe watch still guards the child
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def popen(argv: Sequence[str], *, env: dict[str, str] | None = None, **kwargs: Any) -> subprocess.Popen:
    """``subprocess.Popen`` for a worker that must not outlive this process.

    The worker should call :func:`watch_parent` as it starts (edgesmith's own
    workers do); the kernel-level guard needs no cooperation.
    """
    read_end, write_end = os.pipe()
    os.set_inheritable(read_end, True)
    env = dict(os.environ if env is None else env)
    env[PARENT_FD_VAR] = str(read_end)
    preexec = None
    # PR_SET_PDEATHSIG fires when the *thread* that forked exits, so it is used
    # only from the main thread, which lives as long as the process.
    if sys.platform.startswith("linux") and threading.current_thread() is threading.main_thread():
        parent = os.getpid()

        def preexec() -> None:
            _die_with_parent(parent)

    try:
        proc = subprocess.Popen(list(argv), env=env, pass_fds=(read_end,), preexec_fn=preexec, **kwargs)
    except BaseException:
        os.close(write_end)
        raise
    finally:
        os.close(read_end)
    # The write end stays open (and unread) in this process for the child's life.
    proc._edgesmith_lifeline = write_end  # type: ignore[attr-defined]
    _close_when_done(proc, write_end)
    return proc


def _close_when_done(proc: subprocess.Popen, fd: int) -> None:
    original = proc.wait

    def wait(timeout: float | None = None) -> int:
        code = original(timeout)
        _close(proc, fd)
        return code

    proc.wait = wait  # type: ignore[method-assign]


def _close(proc: subprocess.Popen, fd: int) -> None:
    if getattr(proc, "_edgesmith_lifeline", None) is not None:
        proc._edgesmith_lifeline = None  # type: ignore[attr-defined]
        try:
            os.close(fd)
        except OSError:
            pass


def watch_parent() -> None:
    """In a worker: exit as soon as the parent that started it is gone."""
    raw = os.environ.pop(PARENT_FD_VAR, None)
    if not raw:
        return
    try:
        fd = int(raw)
        os.set_inheritable(fd, False)  # not passed on to the worker's own children
    except (ValueError, OSError):
        return

    def wait_for_eof() -> None:
        try:
            while os.read(fd, 1):
                pass
        except OSError:
            pass
        os._exit(137)

    threading.Thread(target=wait_for_eof, name="edgesmith-parent-watch", daemon=True).start()


def kill(proc: subprocess.Popen) -> None:
    """Stop a worker now and reap it."""
    if proc.poll() is None:
        proc.kill()
    proc.wait()
