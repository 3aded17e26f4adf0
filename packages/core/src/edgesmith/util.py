"""Small helpers shared by the core and backends (no vendor imports)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterable
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
    """Physical cores (not hyper-threads) this process may run on: the best
    default thread count for LLM decode.

    On Linux these are the distinct (package, core) pairs of the CPUs in the
    process's affinity mask (``os.sched_getaffinity``), so ``taskset`` and
    container CPU sets are respected; on macOS ``hw.physicalcpu``. Where the
    topology cannot be read, half the usable CPUs above four (a guess at SMT).
    """
    usable = _usable_cpus()
    if sys.platform.startswith("linux"):
        cores = _linux_cores(usable)
        if cores:
            return cores
    elif sys.platform == "darwin":
        try:
            out = subprocess.run(["sysctl", "-n", "hw.physicalcpu"], capture_output=True, text=True,
                                 timeout=5)
            return max(1, min(int(out.stdout.strip()), len(usable)))
        except (OSError, ValueError, subprocess.SubprocessError):
            pass
    n = len(usable)
    return max(1, n // 2 if n > 4 else n)


def _usable_cpus() -> set[int]:
    """CPU numbers this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        try:
            return set(os.sched_getaffinity(0))
        except OSError:
            pass
    return set(range(os.cpu_count() or 1))


def _linux_cores(cpus: set[int]) -> int:
    """Distinct physical cores among ``cpus``: from sysfs topology, else /proc/cpuinfo (0: unknown)."""
    cores = set()
    for cpu in cpus:
        topo = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            cores.add(((topo / "physical_package_id").read_text().strip(),
                       (topo / "core_id").read_text().strip()))
        except OSError:
            cores.clear()
            break
    if cores:
        return len(cores)
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return 0
    for block in text.split("\n\n"):
        fields = dict((k.strip(), v.strip()) for k, _, v in (ln.partition(":") for ln in block.splitlines()))
        if fields.get("processor", "").isdigit() and int(fields["processor"]) in cpus and "core id" in fields:
            cores.add((fields.get("physical id", "0"), fields["core id"]))
    return len(cores)


def parse_options(pairs: Iterable[str]) -> dict[str, str]:
    """``["a=1", "b=x"]`` → ``{"a": "1", "b": "x"}`` with a clear error on a bad pair."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"bad option {pair!r}; write --option KEY=VALUE")
        out[key.strip()] = value.strip()
    return out


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
