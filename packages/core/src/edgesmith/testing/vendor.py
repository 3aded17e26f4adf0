"""Opening an artifact with the vendor's own tool, in the environment of the
backend that made it: proof that what edgesmith wrote is what the stack loads.

:func:`check_loads` runs :func:`load_natively` in-process when the backend
lives here, otherwise in its registered environment's Python (the test
process may hold the core only).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _gguf(path: Path, entry: str | None) -> str:
    from llama_cpp import Llama

    Llama(str(path / entry if entry else path), verbose=False, n_ctx=64).close()
    return "llama_cpp.Llama"


def _openvino(path: Path, entry: str | None) -> str:
    import openvino_genai

    openvino_genai.LLMPipeline(str(path), "CPU")
    return "openvino_genai.LLMPipeline"


def _onnx(path: Path, entry: str | None) -> str:
    import onnxruntime_genai

    onnxruntime_genai.Model(str(path))
    return "onnxruntime_genai.Model"


def _mlx(path: Path, entry: str | None) -> str:
    from mlx_lm import load

    load(str(path))
    return "mlx_lm.load"


LOADERS = {"gguf": _gguf, "openvino": _openvino, "onnx": _onnx, "mlx": _mlx}


def load_natively(payload: dict[str, Any]) -> dict[str, str]:
    """Open ``payload["path"]`` (of ``format``, main file ``entry``) with its vendor's loader."""
    fmt = payload["format"]
    if fmt not in LOADERS:
        raise ValueError(f"no vendor loader for {fmt} artifacts here")
    return {"loaded_by": LOADERS[fmt](Path(payload["path"]), payload.get("entry"))}


def check_loads(path: str | Path, fmt: str, backend: str, entry: str | None = None) -> str:
    """Load the artifact with its vendor's own tool where ``backend`` lives;
    the loader's name, or the vendor's error raised."""
    from .. import environments, worker
    from ..plugins import get_manager

    payload = {"path": str(path), "format": fmt, "entry": entry}
    rec = get_manager().records[backend]
    if rec.environment is None:
        return load_natively(payload)["loaded_by"]
    answer = worker.run("edgesmith.testing.vendor:load_natively", payload, python=str(rec.environment.python),
                        env=environments.child_env(), timeout=600)
    if not answer.ok:
        raise AssertionError(f"{fmt} artifact {path} does not load in {backend}'s own tool: {answer.error}\n"
                             f"{answer.log[-2000:]}")
    return answer.result["loaded_by"]
