"""What the transformers backend declares: one operation, ``load hf``.

Cheap to import: no torch, no transformers. The handler is named as
``"module:function"`` and imported only when a model is loaded.
"""

from __future__ import annotations

from importlib import metadata

from edgesmith.hookspecs import hookimpl
from edgesmith.types import BackendInfo, Operation

from . import __version__
from .options import LOAD as LOAD_OPTIONS

NAME = "transformers"
#: Distributions recorded in manifests and listed by `edgesmith backends transformers`.
LIBRARIES = ("transformers", "torch", "tokenizers", "safetensors")


def _check() -> str | None:
    """Usable here? Installed-distribution metadata only (no import)."""
    missing = []
    for dist in ("transformers", "torch", "tokenizers"):
        try:
            metadata.version(dist)
        except metadata.PackageNotFoundError:
            missing.append(dist)
    if missing:
        return f"{', '.join(missing)} not installed; edgesmith install transformers --upgrade"
    return None


#: No ``architectures``: a reference runs any causal LM transformers has a class for
#: (the core then restricts nothing); the loader refuses the rest by name
#: (:func:`edgesmith_transformers.checkpoint.causal_lm_problem`). Tested with
#: transformers 5.7.0 on llama, qwen2, qwen3, gemma3_text and phi3 (tests/backends/transformers).
LOAD = Operation("load", "hf", "edgesmith_transformers.runner:load", options=LOAD_OPTIONS, devices=("cpu",),
                 summary="generate and score a Hugging Face causal LM with transformers + torch on the "
                         "CPU (float32, eager attention: the reference of `edgesmith eval`)")


@hookimpl
def edgesmith_backend() -> BackendInfo:
    return BackendInfo(
        name=NAME,
        version=__version__,
        summary="transformers + torch on the CPU: Hugging Face checkpoints in float32, the "
                "full-precision reference of `edgesmith eval --reference`",
        operations=(LOAD,),
        libraries=LIBRARIES,
        notes={
            "convert": "the transformers backend runs checkpoints as they are; converting is "
                       "what the other backends do",
            "quantize": "the transformers backend is the full-precision reference; quantize with "
                        "another backend and compare with `edgesmith eval --reference`",
            "compile": "transformers runs eagerly: there is no ahead-of-time artifact",
        },
        check=_check,
    )
