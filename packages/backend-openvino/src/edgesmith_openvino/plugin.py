"""edgesmith hooks for OpenVINO. Importing this module imports no vendor library."""

from __future__ import annotations

import importlib.metadata
import importlib.util
from collections.abc import Mapping
from pathlib import Path

from edgesmith.hookspecs import hookimpl
from edgesmith.types import Artifact, BackendInfo, Context, QuantSpec

from . import __version__
from .schemes import SCHEMES

NAME = "openvino"
LIBRARIES = ("openvino", "openvino-genai", "openvino-tokenizers", "nncf", "optimum-intel",
             "optimum", "transformers", "torch")
_NEEDED = {"openvino": "openvino", "openvino_genai": "openvino-genai",
           "openvino_tokenizers": "openvino-tokenizers", "nncf": "nncf"}


def _check() -> str | None:
    missing = [dist for mod, dist in _NEEDED.items() if importlib.util.find_spec(mod) is None]
    if missing:
        return f"{', '.join(missing)} not installed; pip install edgesmith-openvino"
    try:
        versions = {d: importlib.metadata.version(d) for d in ("openvino", "openvino-genai")}
    except importlib.metadata.PackageNotFoundError as exc:
        return f"{exc.name} metadata missing; reinstall edgesmith-openvino"
    # openvino-genai and the runtime must come from the same release.
    if versions["openvino-genai"].split(".")[:3] != versions["openvino"].split(".")[:3]:
        return (f"openvino {versions['openvino']} and openvino-genai {versions['openvino-genai']} "
                f"differ; install matching versions (pip install edgesmith-openvino)")
    return None


@hookimpl
def edgesmith_backend() -> BackendInfo:
    return BackendInfo(
        name=NAME,
        version=__version__,
        summary="Intel OpenVINO: IR export, NNCF weight compression and INT8 PTQ, "
                "compiled blobs, openvino-genai generation",
        converts=[("hf", "openvino"), ("onnx", "openvino")],
        quantizes=[("openvino", "openvino")],
        compiles=[("openvino", "openvino")],
        runs=["openvino"],
        schemes=SCHEMES,
        devices=["cpu", "gpu", "npu", "auto"],
        libraries=LIBRARIES,
        notes={"convert": "Hugging Face export needs optimum-intel (torch); ONNX import needs only openvino"},
        check=_check,
    )


@hookimpl
def edgesmith_convert(source: Artifact, target: str, options: Mapping[str, str], output: Path,
                      ctx: Context) -> Artifact | None:
    if target != "openvino" or source.format not in ("hf", "onnx"):
        return None
    from . import convert

    if source.format == "hf":
        return convert.hf_to_ir(source, options, output, ctx)
    return convert.onnx_to_ir(source, options, output, ctx)


@hookimpl
def edgesmith_quantize(source: Artifact, spec: QuantSpec, options: Mapping[str, str], output: Path,
                       ctx: Context) -> Artifact | None:
    if source.format != "openvino":
        return None
    from . import quantize

    return quantize.quantize(source, spec, options, output, ctx)


@hookimpl
def edgesmith_compile(source: Artifact, device: str, options: Mapping[str, str], output: Path,
                      ctx: Context) -> Artifact | None:
    if source.format != "openvino":
        return None
    from . import compile as compile_mod

    return compile_mod.compile_ir(source, device, options, output, ctx)


@hookimpl
def edgesmith_run(artifact: Artifact, options: Mapping[str, str], ctx: Context):  # -> Runner | None
    if artifact.format != "openvino":
        return None
    from . import runner

    return runner.load(artifact, options, ctx)
