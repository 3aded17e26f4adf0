"""What the qnn backend declares: its operations, their options and handlers.

Imports nothing heavy (no onnx, onnxruntime or numpy); each handler is named
as ``"module:function"`` and imported only when its operation runs.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util

from edgesmith.hookspecs import hookimpl
from edgesmith.types import BackendInfo, Operation

from . import __version__

# The hooks beyond edgesmith_backend: optimize targets, doctor's rule, deploy commands.
from .contrib import edgesmith_deploy_commands, edgesmith_doctor_rules, edgesmith_optimize_targets  # noqa: F401
from .options import (
    COMPILE_OPTIONS,
    CONVERT_OPTIONS,
    LLM_CONVERT_OPTIONS,
    LLM_QUANTIZE_OPTIONS,
    LLM_TYPES,
    LLM_UNSUPPORTED,
    LOAD_OPTIONS,
    NAME,
    QUANTIZE_OPTIONS,
)
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


_COMPILE = "edgesmith_qnn.compile:compile_npu"
_LOAD = "edgesmith_qnn.runner:load"
_NPU = ("npu",)

#: Every operation, in the order ``edgesmith backends qnn`` lists them.
OPERATIONS = (
    Operation("convert", "onnx", "edgesmith_qnn.convert:fix_static", options=CONVERT_OPTIONS,
              summary="fix dynamic input dimensions to static sizes (--option shape=NAME:1x128)"),
    Operation("convert", "hf", "edgesmith_qnn.llm_export:export", format="qnn", variant="llm",
              options=LLM_CONVERT_OPTIONS, architectures=LLM_TYPES, unsupported=LLM_UNSUPPORTED,
              summary="a causal LM as static prefill/decode graphs over a host-held KV cache (float; "
              "needs torch and transformers in the qnn environment)"),
    Operation("quantize", "qnn", "edgesmith_qnn.llm_build:quantize", variant="llm",
              options=LLM_QUANTIZE_OPTIONS, schemes=tuple(SCHEMES), activations=True,
              summary="both graphs of a language-model pipeline to QDQ (w8a16, w4a16), calibrated on text "
              "through the host loop"),
    Operation("quantize", "onnx", "edgesmith_qnn.quantize:quantize", format="qnn",
              options=QUANTIZE_OPTIONS, schemes=tuple(SCHEMES), activations=True,
              summary="static QDQ for the HTP (16/8-bit activations, 8/4-bit weights), ONNX Runtime's "
              "QNN configuration"),
    Operation("compile", "qnn", _COMPILE, options=COMPILE_OPTIONS, devices=_NPU,
              summary="EPContext model + QNN context binary for the HTP, here or on Qualcomm AI Hub"),
    Operation("compile", "onnx", _COMPILE, format="qnn", options=COMPILE_OPTIONS, devices=_NPU,
              summary="a float ONNX graph compiled for the HTP (fp16; needs soc_model)"),
    # On x86-64 the HTP is onnxruntime-qnn's simulator: optimize plans these pipelines
    # only for small models there (contrib.SIMULATOR_MAX_PARAMS).
    Operation("load", "qnn", _LOAD, options=LOAD_OPTIONS, devices=_NPU,
              summary="a language-model pipeline (llm.json) generates on the HTP; other fixed-shape "
              "graphs: Runner.infer (a fixed-window causal LM also scores)"),
    Operation("load", "onnx", _LOAD, options=LOAD_OPTIONS, devices=_NPU, generates=False,
              summary="a QDQ or float ONNX graph on the HTP: Runner.infer"),
)


@hookimpl
def edgesmith_backend() -> BackendInfo:
    return BackendInfo(
        name=NAME,
        version=__version__,
        summary="Qualcomm QNN via the onnxruntime-qnn EP: QDQ quantization, HTP context binaries, HTP runs",
        operations=OPERATIONS,
        libraries=("onnxruntime", "onnxruntime-qnn", "onnx"),
        notes={
            "convert": "hf -> qnn: causal LMs (llama, qwen2, qwen3) as static graphs; onnx -> onnx: "
                       "fixes dynamic input shapes; export encoders to ONNX with the olive backend",
            "run": "its language-model pipelines generate (edgesmith run, bench, eval, serve, optimize "
                   "--target snapdragon-npu); other fixed-shape graphs run on arrays (Runner.infer)",
        },
        check=_check,
    )
