"""The ``-O KEY=VALUE`` settings of every Olive operation, and the names they use.

Imported by ``plugin.py`` to declare the operations, and by the operation
modules for names and defaults, so it must stay light: ``edgesmith.options``,
``attrs`` and constants only (no Olive, ONNX Runtime, torch or numpy).
"""

from __future__ import annotations

import attrs

from edgesmith.options import Option

#: edgesmith provider name -> (Olive device, ONNX Runtime execution provider).
PROVIDERS: dict[str, tuple[str, str]] = {
    "cpu": ("cpu", "CPUExecutionProvider"),
    "cuda": ("gpu", "CUDAExecutionProvider"),
    "dml": ("gpu", "DmlExecutionProvider"),
    "webgpu": ("gpu", "WebGpuExecutionProvider"),
    "qnn": ("npu", "QNNExecutionProvider"),
    "openvino": ("cpu", "OpenVINOExecutionProvider"),
}
#: Canonical dtype (edgesmith.options) -> the ModelBuilder's precision name.
PRECISIONS = {"f32": "fp32", "f16": "fp16", "int4": "int4"}
#: int4 settings of convert when not given (the builder's own defaults).
CONVERT_BLOCK_SIZE = 32
CONVERT_ACCURACY_LEVEL = 4
#: Static QDQ ``calibrate_method`` -> ONNX Runtime's name.
CALIBRATE_METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}
#: compile ``level`` -> ONNX Runtime's graph optimization level.
LEVELS = {"basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}

#: The ``provider`` option of every operation that runs a workflow.
PROVIDER = Option("provider", "choice", "execution provider the result is built for",
                  default="cpu", choices=tuple(PROVIDERS))
#: MatMulNBits accuracy level: the lowest precision of the activations in the matmul.
ACCURACY_LEVEL = Option("accuracy_level", "int", "lowest precision MatMulNBits computes in: "
                        "1 fp32, 2 fp16, 3 bf16, 4 int8", default=4, min=1, max=4)

#: convert hf->onnx (``--dtype`` sets ``dtype``). block_size and accuracy_level
#: have no declared default so that giving them without int4 can be refused.
CONVERT = (
    Option("dtype", "dtype", "weights of the result; int4 is the builder's RTN", default="f32",
           choices=tuple(PRECISIONS)),
    PROVIDER,
    Option("block_size", "int", f"int4 only: weights per quantization block, a power of two "
           f"(default {CONVERT_BLOCK_SIZE})", min=16, max=256),
    attrs.evolve(ACCURACY_LEVEL, default=None,
                 help=f"int4 only: {ACCURACY_LEVEL.help} (default {CONVERT_ACCURACY_LEVEL})"),
)

#: quantize onnx->onnx of a GenAI bundle (weight-only, dynamic int8, fp16).
BUNDLE = (
    attrs.evolve(ACCURACY_LEVEL, default=None, min=0,
                 help="rtn/hqq only: " + ACCURACY_LEVEL.help + "; 0 unset (default: 4 on the CPU provider, "
                 "else unset)"),
    PROVIDER,
)

#: quantize onnx->onnx of an ONNX model that is not a GenAI bundle (static QDQ).
STATIC = (
    PROVIDER,
    Option("per_channel", "bool", "per-channel weight scales", default=True),
    Option("calibrate_method", "choice", "how activation ranges are chosen", default="minmax",
           choices=tuple(CALIBRATE_METHODS)),
    Option("samples", "int", "most calibration samples used (default: all)", min=1, max=100_000),
    Option("activation_type", "choice", "unsigned (asymmetric) or signed activations", default="uint",
           choices=("uint", "int")),
)

#: quantize hf->onnx (GPTQ, then the GenAI builder).
GPTQ = (
    ACCURACY_LEVEL,
    PROVIDER,
    Option("seq_len", "int", "tokens per calibration window", default=512, min=8, max=32768),
    Option("samples", "int", "most calibration windows used", default=128, min=1, max=4096),
)

#: compile onnx (ahead-of-time ONNX Runtime graph optimization).
COMPILE = (
    Option("level", "choice", "ONNX Runtime graph optimization level; all ties the result to this "
           "CPU's instruction set", default="extended", choices=tuple(LEVELS)),
    Option("provider", "choice", "execution provider (CPU only here)", default="cpu", choices=("cpu",)),
    Option("measure", "bool", "time loading the source and the result, into the manifest", default=False),
)

#: convert hf->onnx of an encoder (torch.onnx, fixed shape).
ENCODER = (
    Option("seq_len", "int", "tokens of the exported graph (batch 1, fixed so NPUs take it); "
           "longer texts are cut", default=128, min=8, max=8192),
)

#: load onnx (run a GenAI bundle or a plain graph).
LOAD = (
    Option("provider", "choice", "execution provider (this build runs on the CPU only)", default="cpu",
           choices=("cpu",)),
    Option("truncate", "bool", "encoders: cut a text longer than the graph's tokens (false: refuse it)",
           default=True),
)
