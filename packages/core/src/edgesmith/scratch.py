"""Owner-tagged temporary directories that a killed run cannot leak for good.

A run killed with SIGKILL cannot clean up after itself, so every temporary
directory edgesmith makes carries its owner's pid in its name
(``edgesmith-TAG-PID-XXXX``); the next run that makes one removes those whose
owner is gone. A live owner's directory is never touched.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

_SCRATCH = re.compile(r"^edgesmith-[a-z0-9_.-]+-(\d+)-[0-9a-f]{8}$")


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (on this machine)."""
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    except OSError:
        return False
    if os.path.exists(f"/proc/{pid}/stat"):
        # A zombie has exited; it only waits for its parent to reap it.
        try:
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[-1].split()[0]
            return state != "Z"
        except (OSError, IndexError):
            return True
    return True


def owner_tag() -> str:
    """``PID-XXXXXXXX``: this process's pid and a random suffix."""
    return f"{os.getpid()}-{uuid.uuid4().hex[:8]}"


def sweep_temp(root: Path | None = None) -> list[Path]:
    """Remove scratch directories under ``root`` (the temp dir) whose owner is gone."""
    root = Path(root or tempfile.gettempdir())
    removed = []
    try:
        entries = list(os.scandir(root))
    except OSError:
        return removed
    for entry in entries:
        m = _SCRATCH.match(entry.name)
        if m and not pid_alive(int(m.group(1))):
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(Path(entry.path))
    return removed


@contextlib.contextmanager
def scratch_dir(tag: str) -> Iterator[Path]:
    """A fresh temporary directory for one job, removed when it ends (and by a
    later run if this process is killed first)."""
    sweep_temp()
    path = Path(tempfile.gettempdir()) / f"edgesmith-{tag}-{owner_tag()}"
    path.mkdir(mode=0o700)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
