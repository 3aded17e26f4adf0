"""What the OpenVINO backend declares: its operations, their options and handlers.

Importing this module imports no vendor library (nor numpy); each handler is
named as ``"module:function"`` and imported only when its operation runs.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util

from edgesmith.encoders import ENCODER_TYPES
from edgesmith.hookspecs import hookimpl
from edgesmith.types import BackendInfo, Operation

from . import __version__

# The hooks beyond edgesmith_backend: optimize targets, doctor's rule, deploy commands.
from .contrib import edgesmith_deploy_commands, edgesmith_doctor_rules, edgesmith_optimize_targets  # noqa: F401
from .options import (
    COMPILE_OPTIONS,
    ENCODER_OPTIONS,
    HF_OPTIONS,
    LOAD_OPTIONS,
    ONNX_OPTIONS,
    PTQ_OPTIONS,
    WEIGHT_OPTIONS,
)
from .schemes import PTQ_SCHEME, WEIGHT_SCHEMES

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


DEVICES = ("cpu", "gpu", "npu", "auto")
#: What hf->IR export takes, held to transformers by tests/backends/openvino/test_architectures.py
#: with optimum-intel 2.2.0 on transformers 5.0.0 (pins.txt); model_type names.
ARCHITECTURES = ("llama", "qwen2", "qwen3", "gemma3_text", "phi3")
UNSUPPORTED = {name: "it exports text generators; encoders take convert hf->openvino (encoder)"
               for name in ENCODER_TYPES}
#: Causal LMs refused by the encoder export, with the route that takes them.
_LM_ROUTE = {name: "a causal LM: the text-generation convert hf->openvino takes it (drop -O seq_len)"
             for name in ARCHITECTURES}
_QUANTIZE = "edgesmith_openvino.quantize:quantize"

#: Every operation, in the order ``edgesmith backends openvino`` lists them.
OPERATIONS = (
    Operation("convert", "hf", "edgesmith_openvino.convert:hf_to_ir", format="openvino",
              options=HF_OPTIONS, architectures=ARCHITECTURES, unsupported=UNSUPPORTED,
              summary="Hugging Face causal LM to a stateful IR with its tokenizer (optimum-intel; fp16, fp32)"),
    Operation("convert", "hf", "edgesmith_openvino.encoder:hf_encoder_to_ir", format="openvino",
              options=ENCODER_OPTIONS, variant="encoder", architectures=ENCODER_TYPES, unsupported=_LM_ROUTE,
              summary="Hugging Face encoder (BERT, MiniLM, RoBERTa, MPNet, DistilBERT) for feature "
              "extraction (optimum-intel), fixed shape, tokenizer and pooling kept"),
    Operation("convert", "onnx", "edgesmith_openvino.convert:onnx_to_ir", format="openvino",
              options=ONNX_OPTIONS, summary="ONNX graph to IR, names and shapes kept (fp32, fp16)"),
    Operation("quantize", "openvino", _QUANTIZE, options=WEIGHT_OPTIONS, schemes=tuple(WEIGHT_SCHEMES),
              variant="weights",
              summary="NNCF weight compression: int8/int4 (sym, asym), nf4, mxfp4, fp8; awq, "
              "scale estimation, gptq from --calibration text"),
    Operation("quantize", "openvino", _QUANTIZE, options=PTQ_OPTIONS, schemes=(PTQ_SCHEME,),
              activations=True, variant=PTQ_SCHEME,
              summary="NNCF full INT8 of weights and activations for encoder and vision IR "
              "(--calibration arrays or text)"),
    Operation("compile", "openvino", "edgesmith_openvino.compile:compile_ir", options=COMPILE_OPTIONS,
              devices=DEVICES, summary="a compiled device blob and openvino-genai's model cache"),
    Operation("load", "openvino", "edgesmith_openvino.runner:load", options=LOAD_OPTIONS, devices=DEVICES,
              summary="LLM IR through openvino-genai (generate, score); other IR on named arrays"),
)


@hookimpl
def edgesmith_backend() -> BackendInfo:
    return BackendInfo(
        name=NAME,
        version=__version__,
        summary="Intel OpenVINO: IR export, NNCF weight compression and INT8 PTQ, "
                "compiled blobs, openvino-genai generation",
        operations=OPERATIONS,
        libraries=LIBRARIES,
        notes={"convert": "Hugging Face export needs optimum-intel (torch); ONNX import needs only openvino"},
        check=_check,
    )
