"""Hook implementations: what the Olive backend declares and where each job goes.

Nothing heavy is imported here: ``edgesmith backends`` lists this backend
without touching Olive, ONNX Runtime or torch.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from pathlib import Path

from edgesmith.hookspecs import hookimpl
from edgesmith.types import Artifact, BackendInfo, Context, QuantSpec

from . import __version__
from .schemes import SCHEMES

NAME = "olive"
PROVIDERS = ("cpu", "cuda", "dml", "qnn", "openvino", "webgpu")

#: Import name -> distribution, for the availability check.
_NEEDS = {
    "olive": "olive-ai",
    "onnxruntime": "onnxruntime",
    "onnxruntime_genai": "onnxruntime-genai==0.11.4",
    "transformers": "transformers>=5,<6",
    "torch": "torch==2.14.1",
    "requests": "requests",
}


def _check() -> str | None:
    missing = [dist for mod, dist in _NEEDS.items() if importlib.util.find_spec(mod) is None]
    if missing:
        return f"missing {', '.join(missing)}; pip install edgesmith-olive (torch first: pip install torch==2.14.1)"
    return None


@hookimpl
def edgesmith_backend() -> BackendInfo:
    return BackendInfo(
        name=NAME,
        version=__version__,
        summary="Olive workflows to ONNX Runtime GenAI bundles (int4 RTN/HQQ/GPTQ, int8, fp16) and static QDQ for other ONNX models",
        converts=[("hf", "onnx")],
        quantizes=[("onnx", "onnx"), ("hf", "onnx")],
        compiles=[("onnx", "onnx")],
        runs=["onnx"],
        schemes=tuple(SCHEMES),
        devices=("cpu", "auto"),
        libraries=("olive-ai", "onnxruntime", "onnxruntime-genai", "onnx", "transformers", "torch"),
        notes={"run": "runs ONNX Runtime GenAI bundles (generate) and plain ONNX graphs (--input NAME=FILE.npy)",
               "quantize": "hf -> onnx is GPTQ int4 from --calibration text; onnx -> onnx is weight-only "
                           "for GenAI bundles, static QDQ (--activation-bits) for other ONNX models"},
        check=_check,
    )


@hookimpl
def edgesmith_convert(
    source: Artifact, target: str, options: Mapping[str, str], output: Path, ctx: Context
) -> Artifact | None:
    if source.format != "hf" or target != "onnx":
        return None
    from .convert import convert

    return convert(source, options, output, ctx)


@hookimpl
def edgesmith_quantize(
    source: Artifact, spec: QuantSpec, options: Mapping[str, str], output: Path, ctx: Context
) -> Artifact | None:
    if source.format not in ("onnx", "hf"):
        return None
    from .quantize import quantize

    return quantize(source, spec, options, output, ctx)


@hookimpl
def edgesmith_compile(
    source: Artifact, device: str, options: Mapping[str, str], output: Path, ctx: Context
) -> Artifact | None:
    if source.format != "onnx" or device not in ("cpu", "auto"):
        return None
    from .compile import compile_bundle

    return compile_bundle(source, device, options, output, ctx)


@hookimpl
def edgesmith_run(artifact: Artifact, options: Mapping[str, str], ctx: Context):
    if artifact.format != "onnx":
        return None
    from .runner import load

    return load(artifact, options, ctx)
