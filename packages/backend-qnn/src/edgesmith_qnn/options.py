"""The ``-O KEY=VALUE`` settings of every qnn operation, and the ``shape`` syntax.

Imported by ``plugin.py`` to declare the operations, so it stays light:
``edgesmith.options`` and the pure-Python scheme table only.
"""

from __future__ import annotations

from edgesmith.errors import UserError
from edgesmith.options import Option

from .schemes import CALIBRATE_METHODS

NAME = "qnn"
#: Largest count accepted for sample counts (a sanity bound).
MAX_COUNT = 100_000
#: Longest wait for an AI Hub job accepted by hub_timeout (seconds).
MAX_TIMEOUT_S = 7 * 24 * 3600

PERFORMANCE_MODES = ("default", "burst", "balanced", "high_performance", "high_power_saver",
                     "low_balanced", "low_power_saver", "power_saver", "extreme_power_saver",
                     "sustained_high_performance")
#: Hexagon (HTP) architecture versions the QNN SDK targets (v68 ... v81).
HTP_ARCHS = ("68", "69", "73", "75", "79", "81")

# Settings several operations share.
SHAPE = Option("shape", "str", "static input sizes NAME:DIMxDIM[,NAME:DIMxDIM] (the NPU needs "
               "static shapes)")
MASK_VALUE = Option("mask_value", "float", "what -inf and huge mask constants become",
                    default=-100.0, min=-1e9, max=-1)
SOC_MODEL = Option("soc_model", "int", "Qualcomm SoC id of the HTP target, e.g. 60 (SM8650); "
                   "needed for float graphs", min=1, max=9999)
HTP_ARCH = Option("htp_arch", "choice", "Hexagon architecture of the HTP target", choices=HTP_ARCHS)
HTP_PERFORMANCE_MODE = Option("htp_performance_mode", "choice", "HTP performance profile",
                              choices=PERFORMANCE_MODES)
CPU_FALLBACK = Option("cpu_fallback", "bool", "let nodes the HTP cannot take run on the CPU",
                      default=False)
#: The local HTP target, as the QNN EP's provider options take it.
TARGET = (SOC_MODEL, HTP_ARCH, HTP_PERFORMANCE_MODE)

#: convert onnx (fix dynamic input sizes).
CONVERT_OPTIONS = (SHAPE,)

#: quantize onnx->qnn (static QDQ).
QUANTIZE_OPTIONS = (
    SHAPE,
    Option("per_channel", "bool", "per-channel weight scales for Conv/ConvTranspose", default=True),
    Option("calibrate_method", "choice", "how activation ranges are calibrated (default: --method, "
           "else minmax)", choices=CALIBRATE_METHODS),
    Option("samples", "int", "cap on calibration samples (default: all; 64 text lines; 8 synthetic)",
           min=1, max=MAX_COUNT),
    Option("tokenizer", "str", "tokenizer.json (or its folder) for text calibration (default: the "
           "one beside the model)"),
    Option("keep_activations", "bool", "keep Relu/Clip in the graph (their clamp matters on the HTP)",
           default=True),
    Option("placement", "bool", "add a placement report (one more HTP graph preparation)",
           default=True),
    MASK_VALUE,
)

#: model_types the static language-model export takes (tested: tiny Llama 3.2, Qwen2.5, Qwen3).
LLM_TYPES = ("llama", "qwen2", "qwen3")
#: A language-model pipeline's graphs: a chunk of prompt, and one token.
GRAPHS = ("prefill", "decode")
#: Why the export refuses the other text architectures of the test kit, and what helps.
LLM_UNSUPPORTED = {
    "gemma3_text": "sliding-window layers and scaled embeddings are not in the static graphs yet; "
                   "run it on the Snapdragon CPU with the llamacpp backend",
    "phi3": "its fused qkv and gate-up projections are not in the static graphs yet; "
            "run it on the Snapdragon CPU with the llamacpp backend",
}

#: convert hf->qnn (llm): a causal LM as static prefill/decode graphs over a fixed cache.
LLM_CONVERT_OPTIONS = (
    Option("context", "int", "tokens the KV cache holds (prompt + generated); the graphs' fixed size",
           default=256, min=8, max=32768),
    Option("chunk", "int", "prompt tokens the prefill graph takes per run", default=32, min=2, max=4096),
    Option("parts", "int", "split each graph by layers into this many graphs run in turn (default: one "
           "part per 1e9 weights, so each context binary stays small enough for the HTP)", min=1, max=256),
    MASK_VALUE,
)

#: quantize qnn (llm): both graphs of a float pipeline, calibrated through the host loop.
LLM_QUANTIZE_OPTIONS = tuple(o for o in QUANTIZE_OPTIONS if o.name not in ("shape", "tokenizer"))

#: What ``hub.profile`` takes; an AI Hub compile takes these too.
PROFILE_OPTIONS = (
    Option("hub_os", "str", "device OS version, or an interval such as [14,) (default: newest)"),
    Option("hub_options", "str", "extra AI Hub job flags (--target_runtime is fixed)"),
    Option("hub_timeout", "int", "seconds to wait for each job (default: no limit)",
           min=1, max=MAX_TIMEOUT_S),
)
#: compile settings of an AI Hub job (hub_device selects it).
HUB_COMPILE_OPTIONS = (
    Option("hub_device", "str", "compile on Qualcomm AI Hub for this device name"),
    *PROFILE_OPTIONS,
    Option("hub_profile", "bool", "also profile the compiled model on the device", default=False),
)

#: compile qnn and onnx->qnn (for the NPU, here or on AI Hub).
COMPILE_OPTIONS = (
    SHAPE, *TARGET, CPU_FALLBACK,
    Option("embed", "bool", "embed the QNN context binary in model.onnx", default=False),
    MASK_VALUE, *HUB_COMPILE_OPTIONS,
)

#: load qnn and onnx (on the HTP).
LOAD_OPTIONS = (CPU_FALLBACK, *TARGET,
                Option("truncate", "bool", "encoders: cut a text longer than the graph's tokens "
                       "(false: refuse it)", default=True))


def parse_shapes(text: str | None) -> dict[str, tuple[int, ...]]:
    """``input_ids:1x128,attention_mask:1x128`` -> {name: (1, 128)}."""
    if not text:
        return {}
    shapes: dict[str, tuple[int, ...]] = {}
    for part in text.replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, dims = part.rpartition(":")
        try:
            if not sep or not name:
                raise ValueError
            shape = tuple(int(d) for d in dims.lower().split("x"))
            if any(d < 1 for d in shape):
                raise ValueError
        except ValueError:
            raise UserError(f"cannot read shape setting {part!r}; write NAME:DIMxDIM, "
                            f"e.g. --option shape=input_ids:1x128") from None
        shapes[name] = shape
    return shapes
