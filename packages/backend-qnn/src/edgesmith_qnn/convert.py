"""ONNX -> ONNX with dynamic input dimensions fixed to static sizes."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgesmith.errors import UserError
from edgesmith.types import Artifact, Context

from . import graph


def fix_static(source: Artifact, opts: Mapping[str, Any], output: Path, ctx: Context) -> Artifact:
    """Handler of ``convert onnx``; ``opts`` are parsed by the core
    (:data:`edgesmith_qnn.options.CONVERT_OPTIONS`)."""
    if not opts.get("shape"):
        raise UserError("qnn convert fixes dynamic input shapes; say which with "
                        "--option shape=NAME:1x128 (one NAME:DIMS per input, comma separated)")
    ctx.progress("fixing input shapes", None, None)
    path, model, facts = graph.prepare(source, opts)
    graph.save(model, output / graph.MODEL_NAME)
    side = graph.copy_side_files(path.parent, output)
    return Artifact(path=output, format="onnx", entry=graph.MODEL_NAME,
                    details={**facts, "side_files": side})
