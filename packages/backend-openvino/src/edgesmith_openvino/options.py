"""The ``-O KEY=VALUE`` settings of every OpenVINO operation.

Imported by ``plugin.py`` to declare the operations and by the operation
modules for defaults, so it stays light: ``edgesmith.options`` only.
"""

from __future__ import annotations

from edgesmith.options import Option

#: Upper bound of sample and token counts (a sanity bound, far above any real use).
MAX_COUNT = 100_000
#: Longest static prompt/answer an NPU LLM is compiled for (a sanity bound).
MAX_TOKENS = 131_072
#: openvino-genai's NPU defaults, passed explicitly so the manifest records them.
NPU_MAX_PROMPT_LEN = 1024
NPU_MIN_RESPONSE_LEN = 128
#: The shared dtype names as OpenVINO spells them (optimum's --weight-format, the manifest).
IR_DTYPES = {"f16": "fp16", "f32": "fp32"}

#: convert hf->openvino (``--dtype`` sets ``dtype``).
HF_OPTIONS = (
    Option("dtype", "dtype", "weight precision of the IR", default="f16", choices=("f16", "f32")),
    Option("task", "str", "optimum export task", default="text-generation-with-past"),
)
#: convert hf->openvino of an encoder (feature extraction, fixed shape).
ENCODER_OPTIONS = (
    Option("dtype", "dtype", "weight precision of the IR", default="f32", choices=("f32", "f16")),
    Option("seq_len", "int", "tokens of the IR's fixed shape (batch 1); longer texts are cut",
           default=128, min=8, max=8192),
)
#: convert onnx->openvino.
ONNX_OPTIONS = (
    Option("dtype", "dtype", "weight precision of the IR", default="f32", choices=("f32", "f16")),
)
#: quantize openvino (weights): nncf.compress_weights.
WEIGHT_OPTIONS = (
    Option("all_layers", "bool", "compress embeddings and the output layer at the primary "
           "precision too (NNCF default: no)"),
    Option("backup_mode", "choice", "precision of layers left out of the primary one "
           "(NNCF default int8_asym)",
           choices=("int8_asym", "int8_sym", "none", "mxfp8_e4m3", "fp8_e4m3")),
    Option("subset_size", "int", "calibration samples used by data-aware methods", default=128,
           min=1, max=MAX_COUNT),
    Option("sensitivity_metric", "choice", "how mixed-precision layers are ranked (data-aware)",
           choices=("weight_quantization_error", "hessian_input_activation", "mean_activation_variance",
                    "max_activation_variance", "mean_activation_magnitude")),
)
#: quantize openvino (int8_ptq): nncf.quantize.
PTQ_OPTIONS = (
    Option("preset", "choice", "performance: symmetric; mixed: asymmetric activations",
           default="performance", choices=("performance", "mixed")),
    Option("subset_size", "int", "calibration samples used", default=300, min=1, max=MAX_COUNT),
    Option("model_type", "choice", "transformer enables NNCF's transformer-specific handling",
           choices=("transformer",)),
    Option("max_length", "int", "text calibration: tokens per sample (default the model's static "
           "sequence length, else 128)", min=1, max=MAX_COUNT),
    Option("tokenizer", "str", "text calibration: the tokenizer.json to use, or its folder "
           "(default the one in the IR folder)"),
)
#: compile openvino.
COMPILE_OPTIONS = (
    Option("performance_hint", "choice", "what the device optimizes for", default="LATENCY",
           choices=("LATENCY", "THROUGHPUT", "CUMULATIVE_THROUGHPUT")),
    Option("inference_precision", "dtype", "execution precision (device default when unset)",
           choices=("f32", "bf16", "f16")),
    Option("kv_cache_precision", "choice", "precision of an LLM's KV cache (device default when unset: "
           "the CPU keeps it compressed, which moves decode log-probabilities by about 0.02)",
           choices=("f32", "f16", "u8")),
    Option("num_streams", "int", "parallel inference streams (device default when unset)",
           min=1, max=256),
    Option("max_prompt_len", "int", "NPU only: the static prompt length the LLM is compiled for "
           f"(default {NPU_MAX_PROMPT_LEN})", min=1, max=MAX_TOKENS),
    Option("min_response_len", "int", "NPU only: tokens reserved for the answer "
           f"(default {NPU_MIN_RESPONSE_LEN})", min=1, max=MAX_TOKENS),
    Option("genai_cache", "bool", "fill openvino-genai's model cache in the output (default: on "
           "except on CPU, where loading from the cache measured slower than compiling)"),
)
#: load openvino.
LOAD_OPTIONS = (
    Option("device", "choice", "device to run on (default cpu, or the device a compiled output "
           "was made for)", choices=("cpu", "gpu", "npu", "auto")),
    Option("truncate", "bool", "encoders: cut a text longer than the IR's tokens (false: refuse it)",
           default=True),
)
