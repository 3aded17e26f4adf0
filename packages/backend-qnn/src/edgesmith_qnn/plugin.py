"""Hook implementations of the qnn backend. Imports nothing heavy at module level."""

from __future__ import annotations

import importlib.metadata
import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgesmith.hookspecs import hookimpl
from edgesmith.types import Artifact, BackendInfo, Context, QuantSpec

from . import __version__
from .options import NAME
from .schemes import SCHEMES


def _check() -> str | None:
    for module, dist in (("onnxruntime", "onnxruntime"), ("onnxruntime_qnn", "onnxruntime-qnn"),
                         ("onnx", "onnx")):
        if importlib.util.find_spec(module) is None:
            return f"{dist} is not installed; pip install edgesmith-qnn"
    try:
        major = int(importlib.metadata.version("onnxruntime-qnn").split(".")[0])
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return "cannot read the onnxruntime-qnn version; reinstall it: pip install 'onnxruntime-qnn>=2.7,<3'"
    if major < 2:
        return "onnxruntime-qnn 1.x is a separate onnxruntime build; install 'onnxruntime-qnn>=2.7,<3' (the plugin EP)"
    return None


@hookimpl
def edgesmith_backend() -> BackendInfo:
    return BackendInfo(
        name=NAME,
        version=__version__,
        summary="Qualcomm QNN via the onnxruntime-qnn EP: QDQ quantization, HTP context binaries, HTP runs",
        converts=[("onnx", "onnx")],
        quantizes=[("onnx", "qnn")],
        compiles=[("qnn", "qnn"), ("onnx", "qnn")],
        runs=("qnn", "onnx"),
        generates=(),
        schemes=tuple(SCHEMES),
        devices=("npu",),
        libraries=("onnxruntime", "onnxruntime-qnn", "onnx"),
        notes={
            "convert": "onnx -> onnx only: fixes dynamic input shapes (--option shape=NAME:1x128); "
                       "export Hugging Face models to ONNX with the olive backend",
            "run": "fixed-shape graphs: use Runner.infer(inputs); text generation is not offered",
        },
        check=_check,
    )


@hookimpl
def edgesmith_convert(source: Artifact, target: str, options: Mapping[str, str], output: Path,
                      ctx: Context) -> Artifact | None:
    if source.format != "onnx" or target != "onnx":
        return None
    from .convert import fix_static

    return fix_static(source, options, output, ctx)


@hookimpl
def edgesmith_quantize(source: Artifact, spec: QuantSpec, options: Mapping[str, str], output: Path,
                       ctx: Context) -> Artifact | None:
    if source.format != "onnx":
        return None
    from .quantize import quantize

    return quantize(source, spec, options, output, ctx)


@hookimpl
def edgesmith_compile(source: Artifact, device: str, options: Mapping[str, str], output: Path,
                      ctx: Context) -> Artifact | None:
    from .compile import check_device, compile_npu

    if source.format not in ("onnx", "qnn") or not check_device(device):
        return None
    return compile_npu(source, options, output, ctx)


@hookimpl
def edgesmith_run(artifact: Artifact, options: Mapping[str, str], ctx: Context) -> Any:
    if artifact.format not in ("qnn", "onnx"):
        return None
    from .runner import load

    return load(artifact, options, ctx.threads)
