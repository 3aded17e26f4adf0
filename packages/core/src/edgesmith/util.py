"""Small helpers shared by the core and backends (no vendor imports)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path

from .errors import UserError


def library_versions(names: Iterable[str]) -> dict[str, str | None]:
    """Installed versions of the given distributions (None when absent)."""
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def physical_cores() -> int:
    """Physical cores (not hyper-threads), the best default thread count for LLM decode."""
    try:
        cores = set()
        with open("/proc/cpuinfo") as f:
            phys = core = None
            for line in f:
                if line.startswith("physical id"):
                    phys = line.split(":")[1].strip()
                elif line.startswith("core id"):
                    core = line.split(":")[1].strip()
                elif not line.strip():
                    if core is not None:
                        cores.add((phys, core))
                    phys = core = None
            if core is not None:
                cores.add((phys, core))
        if cores:
            return len(cores)
    except OSError:
        pass
    return max(1, (os.cpu_count() or 2) // (2 if (os.cpu_count() or 1) > 4 else 1))


def parse_options(pairs: Iterable[str]) -> dict[str, str]:
    """``["a=1", "b=x"]`` → ``{"a": "1", "b": "x"}`` with a clear error on a bad pair."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"bad option {pair!r}; write --option KEY=VALUE")
        out[key.strip()] = value.strip()
    return out


def check_options(options: Mapping[str, str], known: Iterable[str], who: str) -> None:
    """Reject option keys a backend does not know, listing the ones it does."""
    known = sorted(set(known))
    unknown = sorted(set(options) - set(known))
    if unknown:
        listed = ", ".join(known) if known else "none"
        raise UserError(f"{who} does not know option(s) {', '.join(unknown)}; known: {listed}")


def dir_size(path: Path) -> int:
    """Total bytes of a file or of every file below a directory."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def content_hash(path: Path, *, skip: Iterable[str] = ("edgesmith.json",)) -> str:
    """sha256 over a file, or over a directory's files (relative names and bytes,
    in sorted order). The manifest itself is skipped so a hash names the content."""
    path = Path(path)
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    skip = set(skip)
    for f in files:
        if f.name in skip:
            continue
        if path.is_dir():
            h.update(str(f.relative_to(path)).encode() + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return "sha256:" + h.hexdigest()


def input_files(directory: Path, names: Iterable[str]) -> dict[str, Path]:
    """``NAME.npy`` for each graph input in a calibration directory, exactly one
    per input; a one-line error names what is missing or left over."""
    names = list(names)
    files = {p.stem: p for p in sorted(Path(directory).glob("*.npy"))}
    missing = [n for n in names if n not in files]
    extra = sorted(set(files) - set(names))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"no file for input(s) {', '.join(missing)}")
        if extra:
            parts.append(f"file(s) {', '.join(e + '.npy' for e in extra)} match no input")
        raise UserError(f"calibration directory {directory} does not match the model: "
                        f"{'; '.join(parts)}; write one NAME.npy per input "
                        f"({', '.join(n + '.npy' for n in names)})")
    return {n: files[n] for n in names}
