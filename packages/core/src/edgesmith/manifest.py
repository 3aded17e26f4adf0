"""The manifest (``edgesmith.json``) and atomic, never-clobbering outputs.

An output is built in a hidden staging sibling directory and renamed into
place only when the backend returned and the manifest is written. Any
exception, Ctrl-C or SIGTERM removes the staging directory, so nothing
half-written ever looks complete; :mod:`edgesmith.claim` holds the rules.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from .claim import TMP_MARK, check_path
from .claim import atomic_output as claimed_output
from .errors import UserError
from .util import content_hash, dir_size

MANIFEST_NAME = "edgesmith.json"
SCHEMA_VERSION = 1

# Single-file suffixes that suggest the user expected -o to name a file.
_FILE_SUFFIXES = {".gguf", ".onnx", ".xml", ".bin", ".safetensors", ".json"}


def read_manifest(path: Path) -> dict[str, Any] | None:
    path = Path(path)
    f = path / MANIFEST_NAME if path.is_dir() else path.parent / MANIFEST_NAME
    if not f.is_file():
        return None
    try:
        data = json.loads(f.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{f} is not valid JSON ({exc}); remove it or restore it") from None
    return data if isinstance(data, dict) else None


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def build_manifest(
    *,
    output: Path,
    fmt: str,
    entry: str | None,
    backend: str,
    backend_version: str,
    libraries: Mapping[str, str | None],
    operation: str,
    parameters: Mapping[str, Any],
    parent: Mapping[str, Any] | None,
    details: Mapping[str, Any],
    seconds: float,
) -> dict[str, Any]:
    from . import __version__

    files = {
        str(p.relative_to(output)): p.stat().st_size
        for p in sorted(output.rglob("*"))
        if p.is_file() and p.name != MANIFEST_NAME
    }
    return {
        "schema_version": SCHEMA_VERSION,
        "format": fmt,
        "entry": entry,
        "backend": {"name": backend, "version": backend_version},
        "edgesmith_version": __version__,
        "libraries": dict(libraries),
        "operation": {"name": operation, "parameters": dict(parameters)},
        "parent": dict(parent) if parent else None,
        "details": dict(details),
        "size_bytes": sum(files.values()),
        "files": files,
        "content_hash": content_hash(output),
        "timings": {"seconds": round(seconds, 3)},
        "created": now_iso(),
    }


def parent_record(path: Path, fmt: str) -> dict[str, Any]:
    """Lineage entry for a source artifact: path, format and content hash.

    A source written by edgesmith already carries its hash in its manifest;
    anything else is hashed here (once per job).
    """
    path = Path(path).resolve()
    manifest = read_manifest(path) if path.is_dir() else None
    digest = manifest.get("content_hash") if manifest else None
    return {
        "path": str(path),
        "format": fmt,
        "content_hash": digest or content_hash(path),
        "size_bytes": dir_size(path),
        "manifest": bool(manifest),
    }


def write_manifest(directory: Path, manifest: Mapping[str, Any]) -> None:
    tmp = directory / (MANIFEST_NAME + ".part")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, directory / MANIFEST_NAME)


def check_output(final: Path, force: bool, sources: Iterable[Path | str] = ()) -> Path:
    """Validate a model-directory ``-o`` before any work starts; the absolute path."""
    final = Path(final)
    if final.suffix.lower() in _FILE_SUFFIXES:
        raise UserError(
            f"-o {final} looks like a file name; -o names a directory that edgesmith creates "
            f"(the model file and edgesmith.json go inside it)"
        )
    return check_path(final, force, sources=sources)


@contextlib.contextmanager
def atomic_output(final: Path, force: bool, sources: Iterable[Path | str] = ()) -> Iterator[Path]:
    """Yield an empty staging directory for ``final``; move it into place on success
    (see :mod:`edgesmith.claim`)."""
    final = check_output(final, force, sources)
    with claimed_output(final, force, sources=sources) as tmp:
        yield tmp


__all__ = ["MANIFEST_NAME", "SCHEMA_VERSION", "TMP_MARK", "atomic_output", "build_manifest",
           "check_output", "parent_record", "read_manifest", "write_manifest"]
