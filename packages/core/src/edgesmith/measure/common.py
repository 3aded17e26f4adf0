"""What bench and eval share: checking artifact paths, sizes, backend versions."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import EdgesmithError, UserError
from .gates import EXIT_MEASURE_FAILED

#: Suffixes of files that hold weights (read once per decoded token).
WEIGHT_SUFFIXES = (".gguf", ".safetensors", ".bin", ".onnx", ".data", ".onnx_data", ".npz",
                   ".pt", ".pth", ".weights")

Progress = Callable[[str], None]


class MeasureError(EdgesmithError):
    """An artifact (or the reference) could not be measured at all."""

    exit_code = EXIT_MEASURE_FAILED


def check_paths(paths: Sequence[str | Path]) -> list[Path]:
    from ..formats import detect

    if not paths:
        raise UserError("give at least one artifact to measure")
    out = []
    for p in paths:
        path = Path(p)
        if not path.exists():
            raise UserError(f"{path} does not exist; give the path of a model file or directory")
        detect(path)  # a path that is no model is the user's to fix (exit 2), not a failed measurement
        out.append(path)
    return out


def sizes(path: Path) -> dict[str, Any]:
    """Size on disk, bytes of weight files, and the format edgesmith detects."""
    from ..formats import detect
    from ..util import dir_size

    try:
        fmt = detect(path).format
    except EdgesmithError:
        fmt = None
    total = dir_size(path)
    files = [path] if path.is_file() else [f for f in path.rglob("*") if f.is_file()]
    weights = sum(f.stat().st_size for f in files if f.name.endswith(WEIGHT_SUFFIXES))
    return {"format": fmt, "size_bytes": total, "weights_bytes": weights or total}


def backend_versions(name: str | None) -> dict[str, Any]:
    """The backend's version and the versions of the vendor libraries it declares."""
    if not name:
        return {}
    from ..plugins import backend_libraries, get_manager

    rec = get_manager().records.get(name)
    if rec is None or rec.info is None:
        return {"name": name}
    return {"name": name, "version": rec.info.version, "distribution": rec.distribution,
            "libraries": backend_libraries(rec), "environment": rec.where,
            "python_version": rec.to_dict()["python_version"]}
