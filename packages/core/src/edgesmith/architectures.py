"""Which architecture a model is, in one vocabulary, and whether an operation takes it.

The vocabulary is Hugging Face's ``model_type`` (``llama``, ``qwen2``,
``qwen3``, ``gemma3_text``, ``phi3``, ``bert``): what a checkpoint's
config.json says, what OpenVINO and MLX folders keep, and what a GGUF's
``general.architecture`` maps to. Backends declare, per operation, the
architectures they take (:attr:`edgesmith.types.Operation.architectures`),
so a request is refused before any heavy work, with the reason.
"""

from __future__ import annotations

import json
from pathlib import Path

from .types import Artifact, Operation

#: GGUF architecture names that differ from the model_type they come from.
GGUF_NAMES = {"gemma3": "gemma3_text", "gemma2": "gemma2"}


def _config_type(directory: Path) -> str | None:
    for name, keys in (("config.json", ("model_type",)), ("genai_config.json", ("model", "type"))):
        path = directory / name
        if not path.is_file():
            continue
        try:
            value = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        for k in keys:
            value = value.get(k) if isinstance(value, dict) else None
        if isinstance(value, str):
            return value
    return None


def model_type(art: Artifact) -> str | None:
    """The architecture of ``art`` as a model_type, or None when it does not say."""
    if art.format == "gguf":
        from . import gguffile

        try:
            arch = gguffile.read(art.main_file).values.get("general.architecture")
        except Exception:  # noqa: BLE001 - an unreadable file is judged by its backend
            return None
        return GGUF_NAMES.get(arch, arch) if isinstance(arch, str) else None
    return _config_type(art.directory)


def refusal(op: Operation, architecture: str | None) -> str | None:
    """Why ``op`` does not take a model of ``architecture`` (None: it does, or
    nothing is known either way)."""
    if not architecture or not op.architectures or architecture in op.architectures:
        return None
    why = op.unsupported.get(architecture) or f"it takes {', '.join(op.architectures)}"
    return f"{op.label} does not take {architecture} models ({why})"
