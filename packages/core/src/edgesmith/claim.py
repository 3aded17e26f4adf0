"""Outputs that never lose anything: checked before work, claimed, swapped in whole.

Every output edgesmith writes (a model directory, ``optimize``'s directory, a
report file) goes through here:

1. :func:`check_path` refuses, before any work, an output that is a source,
   holds one or sits inside one, that could not be swapped into place (the
   current directory, a mount point) or written at all.
2. :func:`claim` takes an exclusive lock beside the output for the whole job,
   so a second run on the same output fails at once instead of silently
   replacing the first one's result.
3. The output is built in a hidden staging sibling named with the owner's pid
   and moved into place only when complete; staging left by a killed run is
   removed by the next run on the same output.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

from .errors import OutputExistsError, UserError
from .scratch import owner_tag, pid_alive

TMP_MARK = ".edgesmith-tmp-"
LOCK_SUFFIX = ".edgesmith-lock"
#: Below this much free space a failed write is put down to a full disk.
_FULL_DISK_BYTES = 8 << 20


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _within(inner: Path, outer: Path) -> bool:
    return inner == outer or outer in inner.parents


def check_sources(final: Path, sources: Iterable[Path | str]) -> None:
    """An output may not be a source, hold one, or sit inside one."""
    out = _real(final)
    for src in sources:
        s = _real(Path(src))
        if s == out:
            raise UserError(f"-o {final} is the source itself; choose an output outside {src}")
        if _within(s, out):
            raise UserError(f"-o {final} holds the source {src}, which replacing it would delete; "
                            f"choose an -o outside it")
        if _within(out, s):
            raise UserError(f"-o {final} is inside the source {src}; edgesmith never writes into a "
                            f"source, choose an -o outside it")


def _unswappable(final: Path) -> str | None:
    """Why an existing ``final`` cannot be replaced by a rename, or None."""
    real = _real(final)
    if real == Path(real.anchor):
        return "is the root of the file system"
    if os.path.ismount(real):
        return "is a mount point"
    try:
        cwd = _real(Path.cwd())
    except OSError:
        cwd = None
    if cwd is not None and _within(cwd, real):
        return "is the current directory" if cwd == real else "holds the current directory"
    if real == _real(Path.home()):
        return "is your home directory"
    return None


def _existing_ancestor(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_path(final: Path, force: bool, *, sources: Iterable[Path | str] = (),
               kind: str = "directory") -> Path:
    """Validate ``-o`` before any work; the absolute path to write."""
    final = Path(os.path.abspath(Path(final).expanduser()))
    check_sources(final, sources)
    if final.exists() or final.is_symlink():
        why = _unswappable(final)
        if why:
            raise UserError(f"-o {final} {why}, which edgesmith cannot replace; give a new "
                            f"{kind} inside it")
        if kind == "directory" and not final.is_dir():
            raise UserError(f"output {final} exists and is not a directory; remove it or choose another -o")
        if kind == "file" and final.is_dir():
            raise UserError(f"{final} is a directory; give a file name")
        if not force:
            raise OutputExistsError(f"output {final} already exists; pass --force to replace it or "
                                    f"choose another -o")
    base = _existing_ancestor(final.parent)
    if not base.is_dir():
        raise UserError(f"cannot create {final}: {base} is a file, not a directory; choose another -o")
    if not os.access(base, os.W_OK | os.X_OK):
        raise UserError(f"cannot write in {base} (read-only or permission denied); choose another -o")
    return final


def _make_parents(directory: Path) -> list[Path]:
    """Create ``directory`` and its missing parents; the ones created, deepest first."""
    missing = []
    p = directory
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir()
        except FileExistsError:
            pass
        except OSError as exc:
            _remove_empty(missing)
            raise UserError(f"cannot create {d} ({exc.strerror}); choose another -o") from None
    return missing


def _remove_empty(dirs: list[Path]) -> None:
    for d in dirs:  # deepest first
        with contextlib.suppress(OSError):
            d.rmdir()


class _Lock:
    """An exclusive lock on ``path`` held for the life of the job (flock where
    there is one: the system drops it if the holder dies, even by SIGKILL)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None

    def acquire(self, what: Path) -> None:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            fcntl = None
        for _ in range(20):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | (0 if fcntl else os.O_EXCL), 0o644)
            except FileExistsError:  # pragma: no cover - Windows: a lock file without flock
                if self._stale():
                    with contextlib.suppress(OSError):
                        self.path.unlink()
                    continue
                self._busy(what)
            except OSError as exc:
                raise UserError(f"cannot write beside {what} ({exc.strerror}); choose another -o") from None
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    os.close(fd)
                    self._busy(what)
                # The file may have been unlinked by the previous holder after we opened it.
                try:
                    same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
                except FileNotFoundError:
                    same = False
                if not same:
                    os.close(fd)
                    continue
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            self.fd = fd
            return
        self._busy(what)  # pragma: no cover - lost the race 20 times

    def _owner(self) -> int | None:
        try:
            return int(self.path.read_text().strip() or 0) or None
        except (OSError, ValueError):
            return None

    def _stale(self) -> bool:  # pragma: no cover - Windows
        pid = self._owner()
        return pid is None or not pid_alive(pid)

    def _busy(self, what: Path) -> None:
        pid = self._owner()
        who = f" (pid {pid})" if pid else ""
        raise UserError(f"another edgesmith run{who} is writing {what}; wait for it to finish or "
                        f"choose another -o")

    def release(self) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()
        os.close(self.fd)
        self.fd = None


@contextlib.contextmanager
def claim(final: Path) -> Iterator[None]:
    """Hold the exclusive claim on ``final`` (its parent must exist)."""
    lock = _Lock(final.parent / f".{final.name}{LOCK_SUFFIX}")
    lock.acquire(final)
    try:
        yield
    finally:
        lock.release()


_STAGING = re.compile(r"^(?:old-)?(\d+)-[0-9a-f]{8}$")


def sweep_staging(final: Path) -> list[Path]:
    """Remove staging siblings of ``final`` left by runs that are gone (call with the claim held)."""
    prefix = f".{final.name}{TMP_MARK}"
    removed = []
    try:
        entries = list(os.scandir(final.parent))
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(prefix):
            continue
        m = _STAGING.match(entry.name[len(prefix):])
        if m and pid_alive(int(m.group(1))) and int(m.group(1)) != os.getpid():
            continue  # a live owner (an edgesmith without the claim): leave it alone
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
        removed.append(Path(entry.path))
    return removed


def staging_path(final: Path, old: bool = False) -> Path:
    return final.parent / f".{final.name}{TMP_MARK}{'old-' if old else ''}{owner_tag()}"


def disk_full(path: Path, exc: BaseException | None = None, *, wrote: bool = True) -> bool:
    """Whether a failure writing at ``path`` is best explained by a full disk:
    ENOSPC in the exception chain (or in a vendor's message about it), or,
    when something had been written, almost no space left."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
            return True
        if "No space left on device" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    if not wrote:
        return False
    try:
        return shutil.disk_usage(_existing_ancestor(path)).free < _FULL_DISK_BYTES
    except OSError:
        return False


def _full_disk_error(final: Path) -> UserError:
    return UserError(f"the disk holding {final.parent} is full; free some space or choose an -o "
                     f"on another disk (nothing was written)")


def _swap_in(tmp: Path, final: Path) -> None:
    """Move ``tmp`` to ``final``; an existing ``final`` is replaced only when both renames work."""
    if not (final.exists() or final.is_symlink()):
        os.replace(tmp, final)
        return
    # Rename the old output aside first, so a crash in between leaves the old or
    # the new output, never a mix; put it back if the second rename fails.
    old = staging_path(final, old=True)
    os.replace(final, old)
    try:
        os.replace(tmp, final)
    except OSError:
        os.replace(old, final)
        raise
    if old.is_dir() and not old.is_symlink():
        shutil.rmtree(old, ignore_errors=True)
    else:
        old.unlink()


@contextlib.contextmanager
def atomic_output(final: Path, force: bool, *, sources: Iterable[Path | str] = (),
                  kind: str = "directory") -> Iterator[Path]:
    """Claim ``final`` and yield its staging path (an empty directory, or for
    ``kind="file"`` a path to write); move it into place when the block succeeds."""
    sources = list(sources)
    final = check_path(final, force, sources=sources, kind=kind)
    created = _make_parents(final.parent)
    try:
        with claim(final):
            # Checked again under the claim: another run may have finished meanwhile.
            final = check_path(final, force, sources=sources, kind=kind)
            sweep_staging(final)
            tmp = staging_path(final)
            try:
                if kind == "directory":
                    tmp.mkdir()
                yield tmp
                try:
                    _swap_in(tmp, final)
                except OSError as exc:
                    if disk_full(final, exc):
                        raise _full_disk_error(final) from exc
                    raise UserError(f"cannot move the finished output into {final} "
                                    f"({exc.strerror}); nothing was changed there") from None
            except BaseException as exc:
                # Judged before the staging is discarded, which frees the space again.
                full = isinstance(exc, Exception) and disk_full(final, exc, wrote=_wrote(tmp))
                _discard(tmp)
                if full:
                    raise _full_disk_error(final) from exc
                if isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
                    raise UserError(f"cannot write {final} ({exc.strerror}); choose another -o") from exc
                raise
    except BaseException:
        _remove_empty(created)
        raise


def _wrote(path: Path) -> bool:
    """Whether the job had written anything to its staging path."""
    try:
        return path.is_file() or (path.is_dir() and any(path.iterdir()))
    except OSError:
        return False


def _discard(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()


def write_file(final: Path, data: str | bytes, force: bool, *,
               sources: Iterable[Path | str] = ()) -> Path:
    """Write a whole file (a report, a certificate) through the same claim."""
    with atomic_output(final, force, sources=sources, kind="file") as tmp:
        if isinstance(data, str):
            tmp.write_text(data, encoding="utf-8")
        else:
            tmp.write_bytes(data)
    return Path(os.path.abspath(final))
