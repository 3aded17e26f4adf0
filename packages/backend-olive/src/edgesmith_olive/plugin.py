"""What the Olive backend declares: its operations, their options and handlers.

Nothing heavy is imported here (not even numpy): ``edgesmith backends`` lists
this backend without touching Olive, ONNX Runtime or torch. Each handler is
named as ``"module:function"`` and imported only when its operation runs.
"""

from __future__ import annotations

import importlib.util

from edgesmith.encoders import ENCODER_TYPES
from edgesmith.hookspecs import hookimpl
from edgesmith.types import BackendInfo, Operation

from . import __version__

# The hooks beyond edgesmith_backend: optimize targets, doctor's rule, deploy commands.
from .contrib import edgesmith_deploy_commands, edgesmith_doctor_rules, edgesmith_optimize_targets  # noqa: F401
from .options import BUNDLE, COMPILE, CONVERT, ENCODER, GPTQ, LOAD, STATIC
from .schemes import BUNDLE_SCHEMES, GPTQ_SCHEMES

NAME = "olive"

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


#: What ModelBuilder takes, held to transformers by the architecture matrix
#: (tests/backends/olive/test_architectures.py) with Olive 0.13 and onnxruntime-genai 0.11.4
#: plus the backend's patches (pins.txt); model_type names.
ARCHITECTURES = ("llama", "qwen2", "qwen3", "gemma3_text", "phi3")
_ENCODER_ROUTE = "ModelBuilder builds causal language models only; encoders take convert hf->onnx (encoder)"
UNSUPPORTED = {name: _ENCODER_ROUTE for name in ENCODER_TYPES}
#: Causal LMs refused by the encoder exporter, with the route that takes them.
_LM_ROUTE = {name: "a causal LM: ModelBuilder's convert hf->onnx takes it (drop -O seq_len)"
             for name in ARCHITECTURES}

#: Every operation, in the order ``edgesmith backends olive`` lists them.
OPERATIONS = (
    Operation("convert", "hf", "edgesmith_olive.convert:convert", format="onnx", options=CONVERT,
              architectures=ARCHITECTURES, unsupported=UNSUPPORTED,
              summary="Hugging Face causal LM to an ONNX Runtime GenAI bundle (ModelBuilder: "
              "f32, f16, int4 RTN) for the provider of your choice"),
    Operation("convert", "hf", "edgesmith_olive.encoder:export", format="onnx", options=ENCODER,
              variant="encoder", architectures=ENCODER_TYPES, unsupported=_LM_ROUTE,
              summary="Hugging Face encoder (BERT, MiniLM, RoBERTa, MPNet, DistilBERT) to a fixed-shape "
              "ONNX graph (torch.onnx; last_hidden_state, pooler_output), tokenizer and pooling kept"),
    Operation("quantize", "onnx", "edgesmith_olive.quantize:quantize", options=BUNDLE,
              schemes=BUNDLE_SCHEMES, variant="bundle",
              summary="a GenAI bundle, weight-only: int4 RTN/HQQ, int8 (MatMulNBits), int8 dynamic, "
              "fp16"),
    Operation("quantize", "onnx", "edgesmith_olive.static:quantize", options=STATIC, activations=True,
              variant="static",
              summary="static QDQ (--activation-bits 8/16, --calibration DIR of NAME.npy) of ONNX "
              "models that are not GenAI bundles (encoders, vision)"),
    Operation("quantize", "hf", "edgesmith_olive.gptq:quantize", format="onnx", options=GPTQ,
              architectures=ARCHITECTURES, unsupported=UNSUPPORTED,
              schemes=GPTQ_SCHEMES, variant="gptq",
              summary="GPTQ int4 from --calibration text, packed into a GenAI bundle"),
    Operation("compile", "onnx", "edgesmith_olive.compile:compile_bundle", options=COMPILE,
              devices=("cpu",),
              summary="ahead-of-time ONNX Runtime graph optimization of a GenAI bundle"),
    Operation("load", "onnx", "edgesmith_olive.runner:load", options=LOAD, devices=("cpu",),
              summary="runs GenAI bundles (generate), encoders (-p TEXT: the embedding) and plain "
              "ONNX graphs (--input NAME=FILE.npy) on the CPU"),
)


@hookimpl
def edgesmith_backend() -> BackendInfo:
    return BackendInfo(
        name=NAME,
        version=__version__,
        summary="Olive workflows to ONNX Runtime GenAI bundles (int4 RTN/HQQ/GPTQ, int8, fp16) and static QDQ for other ONNX models",
        operations=OPERATIONS,
        libraries=("olive-ai", "onnxruntime", "onnxruntime-genai", "onnx", "transformers", "torch"),
        check=_check,
    )
