"""The ``-O KEY=VALUE`` settings the qnn operations share, and the ``shape`` syntax."""

from __future__ import annotations

from edgesmith.errors import UserError
from edgesmith.options import Option

NAME = "qnn"
#: Largest count accepted for sample counts (a sanity bound).
MAX_COUNT = 1 << 20

PERFORMANCE_MODES = ("default", "burst", "balanced", "high_performance", "high_power_saver",
                     "low_balanced", "low_power_saver", "power_saver", "extreme_power_saver",
                     "sustained_high_performance")
#: Hexagon (HTP) architecture versions the QNN SDK targets (v68 ... v81).
HTP_ARCHS = ("68", "69", "73", "75", "79", "81")

# The settings several operations share; each operation module lists its own tuple.
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
