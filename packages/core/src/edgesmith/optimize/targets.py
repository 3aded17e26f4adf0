"""Deployment targets: which stack serves a kind of device, and what to try on it.

A target names the backend(s) that make the best artifact for a device, the
format that ends up deployed, how to make the unquantized base (also the
quality reference), and the candidates to compare. Recipes override any of it
or add targets of their own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs

from ..errors import UserError


@attrs.frozen
class Candidate:
    """One way to quantize the base; ``label`` names its folder and table row."""

    label: str
    bits: int | None = None
    group_size: int | None = None
    scheme: str | None = None
    method: str | None = None
    symmetric: bool | None = None
    ratio: float | None = None
    #: a text or input file; recipes may say ``true`` to use the recipe's calibration file
    calibration: str | None = None
    options: Mapping[str, str] = attrs.field(factory=dict)

    def quantize_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :func:`edgesmith.api.quantize`."""
        kw = {"bits": self.bits, "group_size": self.group_size, "scheme": self.scheme,
              "method": self.method, "symmetric": self.symmetric, "ratio": self.ratio,
              "calibration": self.calibration, "options": dict(self.options)}
        return {k: v for k, v in kw.items() if v is not None and v != {}}


def _always(machine: Any) -> bool:
    return True


@attrs.frozen
class Target:
    name: str
    title: str
    device: str
    #: preference order; the first usable one that generates ``format`` is used
    backends: tuple[str, ...]
    format: str
    base_options: Mapping[str, str] = attrs.field(factory=dict)
    candidates: tuple[Candidate, ...] = ()
    #: compile every candidate for this device afterwards (``None``: no compile step)
    compile: str | None = None
    #: whether this machine is the device (otherwise speeds are a stand-in)
    present: Callable[[Any], bool] = attrs.field(default=_always, eq=False, repr=False)
    #: base options used instead when the device is present (the device's own build)
    device_options: Mapping[str, str] = attrs.field(factory=dict)
    #: a target to use when none of ``backends`` can generate text here, and why
    fallback: str | None = None


def _intel(m: Any) -> bool:
    return m.cpu_vendor == "Intel"


def _apple(m: Any) -> bool:
    return bool(m.apple_silicon)


def _nvidia(m: Any) -> bool:
    return bool(m.cuda_devices) or "NVIDIA GPU" in m.gpus


def _snapdragon_npu(m: Any) -> bool:
    return bool(m.snapdragon and m.npus)


BUILTIN: dict[str, Target] = {t.name: t for t in (
    Target("portable", "any CPU: laptops, phones, single-board computers (llama.cpp)", "cpu",
           ("llamacpp",), "gguf", {"dtype": "f16"},
           (Candidate("Q4_K_M", scheme="Q4_K_M"), Candidate("Q8_0", scheme="Q8_0"))),
    Target("intel-cpu", "Intel CPUs (OpenVINO)", "cpu", ("openvino",), "openvino", {"dtype": "fp16"},
           (Candidate("int4-g64", bits=4, group_size=64), Candidate("int8", bits=8)),
           present=_intel),
    Target("apple-silicon", "Apple M-series (MLX)", "gpu", ("mlx",), "mlx", {"dtype": "float16"},
           (Candidate("4bit-g64", bits=4, group_size=64), Candidate("8bit-g64", bits=8, group_size=64)),
           present=_apple),
    Target("nvidia-gpu", "NVIDIA GPUs (ONNX Runtime GenAI, built by Olive)", "gpu", ("olive",), "onnx",
           {"dtype": "fp32", "provider": "cpu"},
           (Candidate("int4-g32", bits=4, group_size=32), Candidate("int8", bits=8)),
           present=_nvidia, device_options={"dtype": "fp16", "provider": "cuda"}),
    Target("snapdragon-npu", "Snapdragon Hexagon NPU (QNN context binaries)", "npu", ("qnn",), "qnn", {},
           (Candidate("a16w8", scheme="a16w8"),), compile="npu", present=_snapdragon_npu,
           fallback="snapdragon-cpu"),
    # Not offered by name: what snapdragon-npu falls back to for text generation.
    # llama.cpp repacks Q4_0 at load time for Arm's dot-product instructions.
    Target("snapdragon-cpu", "Snapdragon Oryon/Kryo CPU (llama.cpp, Q4_0 repacked for Arm)", "cpu",
           ("llamacpp",), "gguf", {"dtype": "f16"},
           (Candidate("Q4_0", scheme="Q4_0"), Candidate("Q8_0", scheme="Q8_0")),
           present=_snapdragon_npu),
)}

#: Names accepted by ``--target`` besides ``auto`` and ``all``.
TARGETS = ("intel-cpu", "apple-silicon", "snapdragon-npu", "nvidia-gpu", "portable")

#: doctor's recommended backend -> the target that uses it
_BY_BACKEND = {"mlx": "apple-silicon", "qnn": "snapdragon-npu", "olive": "nvidia-gpu",
               "openvino": "intel-cpu", "llamacpp": "portable"}


def resolve(names: list[str], machine: Any, known: Mapping[str, Target]) -> tuple[list[str], str]:
    """Expand ``auto``/``all`` into target names; returns (names, how they were chosen)."""
    from ..doctor import choose_stack

    out: list[str] = []
    how = []
    for name in names:
        if name == "all":
            out += [t for t in known if t in TARGETS or t not in BUILTIN]
            how.append("all: every target")
        elif name == "auto":
            backend, why = choose_stack(machine)
            out.append(_BY_BACKEND[backend])
            how.append(f"auto: {_BY_BACKEND[backend]} ({why})")
        elif name in known and (name in TARGETS or name not in BUILTIN):
            out.append(name)
        else:
            offered = ", ".join(["auto", *[t for t in known if t in TARGETS or t not in BUILTIN], "all"])
            raise UserError(f"unknown target {name!r}; choose one of {offered}")
    seen: list[str] = []
    for n in out:
        if n not in seen:
            seen.append(n)
    return seen, "; ".join(how)
