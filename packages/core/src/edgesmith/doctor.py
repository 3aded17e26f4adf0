"""``edgesmith doctor``: what this machine is, and which stack suits it.

Facts come through a :class:`Probe` (files, directory listings, a few
commands) so detection is unit-tested with inputs recorded on other machines
(an Apple M-series Mac, a Snapdragon laptop, an Intel machine with an NPU).
The recommendation follows the usual decision tree: Apple silicon → MLX,
Snapdragon NPU → QNN, NVIDIA GPU → Olive/ONNX Runtime, Intel → OpenVINO,
anything else → llama.cpp; then it picks the widest quantization whose
weights fit the memory budget with room left for the KV cache. A backend that
cannot run the model (``refused``) is never recommended, and a speed measured
on this machine (:mod:`edgesmith.doctor_measure`) overrides the rule of thumb.
"""

from __future__ import annotations

import logging
import os
import platform
import re
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs

log = logging.getLogger("edgesmith")

# -- probes -------------------------------------------------------------------


class Probe:
    """The live machine."""

    def __init__(self) -> None:
        self.system = platform.system()
        self.machine = platform.machine().lower()
        self.env: Mapping[str, str] = os.environ

    def read(self, path: str) -> str | None:
        try:
            return Path(path).read_text(errors="replace")
        except OSError:
            return None

    def listdir(self, path: str) -> list[str]:
        try:
            return sorted(os.listdir(path))
        except OSError:
            return []

    def run(self, *cmd: str) -> str | None:
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout if out.returncode == 0 else None


class RecordedProbe(Probe):
    """Inputs recorded on another machine: ``{"system", "machine", "files",
    "commands", "env"}``; directory listings come from the file paths."""

    def __init__(self, data: Mapping[str, Any]):
        self.system = data["system"]
        self.machine = data["machine"].lower()
        self.env = data.get("env", {})
        self.files: Mapping[str, str] = data.get("files", {})
        self.commands: Mapping[str, str] = data.get("commands", {})

    def read(self, path: str) -> str | None:
        return self.files.get(path)

    def listdir(self, path: str) -> list[str]:
        prefix = path.rstrip("/") + "/"
        return sorted({p[len(prefix):].split("/")[0] for p in self.files if p.startswith(prefix)})

    def run(self, *cmd: str) -> str | None:
        return self.commands.get(" ".join(cmd))


# -- facts --------------------------------------------------------------------

#: Instruction-set features worth knowing for LLM kernels, by the name Linux uses.
_X86_ISA = {"avx2": "AVX2", "avx512f": "AVX-512", "avx512_vnni": "AVX-512 VNNI",
            "avx_vnni": "AVX-VNNI", "amx_tile": "AMX", "amx_int8": "AMX-INT8", "f16c": "F16C",
            "fma": "FMA"}
_ARM_ISA = {"asimd": "NEON", "asimddp": "DotProd", "i8mm": "I8MM", "sve": "SVE", "sve2": "SVE2",
            "sme": "SME", "fphp": "FP16"}
_MAC_ISA = {"hw.optional.neon": "NEON", "hw.optional.arm.FEAT_DotProd": "DotProd",
            "hw.optional.arm.FEAT_I8MM": "I8MM", "hw.optional.arm.FEAT_SME": "SME",
            "hw.optional.arm.FEAT_BF16": "BF16", "hw.optional.arm.FEAT_FP16": "FP16"}
_QCOM_SOCS = {"x1e80100": "Snapdragon X Elite", "x1e78100": "Snapdragon X Elite",
              "x1p42100": "Snapdragon X Plus", "sm8650": "Snapdragon 8 Gen 3",
              "sm8550": "Snapdragon 8 Gen 2", "sm8750": "Snapdragon 8 Elite",
              "qcs6490": "QCS6490", "sc8280xp": "Snapdragon 8cx Gen 3"}


@attrs.frozen
class Machine:
    os: str
    arch: str
    cpu_vendor: str
    cpu_model: str
    isa: tuple[str, ...]
    physical_cores: int | None
    logical_cores: int | None
    memory_bytes: int | None
    apple_silicon: bool = False
    snapdragon: str | None = None
    npus: tuple[str, ...] = ()
    gpus: tuple[str, ...] = ()
    cuda_devices: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


def _sysctl(probe: Probe) -> dict[str, str]:
    out = probe.run("sysctl", "-a") or ""
    pairs = (line.split(":", 1) for line in out.splitlines() if ":" in line)
    return {k.strip(): v.strip() for k, v in pairs}


def _cpuinfo(probe: Probe) -> list[dict[str, str]]:
    text = probe.read("/proc/cpuinfo") or ""
    blocks = []
    for block in text.strip().split("\n\n"):
        pairs = (line.split(":", 1) for line in block.splitlines() if ":" in line)
        blocks.append({k.strip(): v.strip() for k, v in pairs})
    return [b for b in blocks if b]


def _meminfo(probe: Probe) -> int | None:
    m = re.search(r"MemTotal:\s+(\d+) kB", probe.read("/proc/meminfo") or "")
    return int(m.group(1)) * 1024 if m else None


def _pci_vendors(probe: Probe, cls: str) -> list[str]:
    """Vendor ids of devices under /sys/class/<cls>/*/device/vendor."""
    out = []
    for dev in probe.listdir(f"/sys/class/{cls}"):
        v = probe.read(f"/sys/class/{cls}/{dev}/device/vendor")
        if v:
            out.append(v.strip().lower())
    return out


def _linux(probe: Probe) -> Machine:
    cpus = _cpuinfo(probe)
    first = cpus[0] if cpus else {}
    flags = set((first.get("flags") or first.get("Features") or "").split())
    arm = probe.machine in ("aarch64", "arm64")
    isa = [name for key, name in (_ARM_ISA if arm else _X86_ISA).items() if key in flags]
    vendor = first.get("vendor_id", "")
    model = first.get("model name", "")
    implementer = first.get("CPU implementer", "")
    compatible = (probe.read("/proc/device-tree/compatible") or "").replace("\0", " ")
    snapdragon = None
    if implementer == "0x51" or "qcom," in compatible:
        vendor = "Qualcomm"
        soc = next((name for key, name in _QCOM_SOCS.items() if key in compatible), None)
        snapdragon = soc or "Snapdragon (unknown SoC)"
        model = model or snapdragon
    elif vendor == "GenuineIntel":
        vendor = "Intel"
    elif vendor == "AuthenticAMD":
        vendor = "AMD"
    cores = {(b.get("physical id"), b.get("core id")) for b in cpus if "core id" in b}
    npus, gpus = [], []
    accel = _pci_vendors(probe, "accel")
    if "0x8086" in accel:
        npus.append("Intel NPU")
    if any(v == "0x1022" or v == "0x1002" for v in accel):
        npus.append("AMD XDNA NPU")
    if snapdragon and any(d.startswith("fastrpc-cdsp") for d in probe.listdir("/dev")):
        npus.append("Qualcomm Hexagon NPU")
    drm = _pci_vendors(probe, "drm")
    if "0x8086" in drm:
        gpus.append("Intel GPU")
    if "0x1002" in drm:
        gpus.append("AMD GPU")
    cuda = []
    smi = probe.run("nvidia-smi", "-L")
    if smi:
        cuda = [line.split(" (UUID")[0] for line in smi.splitlines() if line.startswith("GPU ")]
    if cuda or "0x10de" in drm:
        gpus.append("NVIDIA GPU")
    return Machine(
        os="Linux", arch=probe.machine, cpu_vendor=vendor or "unknown", cpu_model=model,
        isa=tuple(isa), physical_cores=len(cores) or None, logical_cores=len(cpus) or None,
        memory_bytes=_meminfo(probe), snapdragon=snapdragon, npus=tuple(npus), gpus=tuple(gpus),
        cuda_devices=tuple(cuda),
    )


def _darwin(probe: Probe) -> Machine:
    s = _sysctl(probe)
    brand = s.get("machdep.cpu.brand_string", "")
    apple = probe.machine == "arm64" or brand.startswith("Apple")
    isa = [name for key, name in _MAC_ISA.items() if s.get(key) == "1"]
    if not apple:
        features = s.get("machdep.cpu.features", "").lower().split() + \
            s.get("machdep.cpu.leaf7_features", "").lower().split()
        isa = [name for key, name in _X86_ISA.items() if key.replace("_", ".") in features
               or key in features]

    def num(key: str) -> int | None:
        return int(s[key]) if s.get(key, "").isdigit() else None

    return Machine(
        os="macOS", arch=probe.machine, cpu_vendor="Apple" if apple else "Intel", cpu_model=brand,
        isa=tuple(isa), physical_cores=num("hw.physicalcpu"), logical_cores=num("hw.logicalcpu"),
        memory_bytes=num("hw.memsize"), apple_silicon=apple,
        npus=("Apple Neural Engine",) if apple else (), gpus=("Apple GPU (Metal)",) if apple else (),
    )


def _windows(probe: Probe) -> Machine:
    ident = probe.env.get("PROCESSOR_IDENTIFIER", "")
    qualcomm = "Qualcomm" in ident
    return Machine(
        os="Windows", arch=probe.machine, cpu_vendor="Qualcomm" if qualcomm else
        ("Intel" if "Intel" in ident else ("AMD" if "AMD" in ident else "unknown")),
        cpu_model=ident, isa=(), physical_cores=None,
        logical_cores=int(probe.env.get("NUMBER_OF_PROCESSORS", "0")) or None, memory_bytes=None,
        snapdragon="Snapdragon (Windows on Arm)" if qualcomm else None,
        npus=("Qualcomm Hexagon NPU",) if qualcomm else (),
    )


def detect_machine(probe: Probe | None = None) -> Machine:
    probe = probe or Probe()
    if probe.system == "Darwin":
        return _darwin(probe)
    if probe.system == "Windows":
        return _windows(probe)
    return _linux(probe)


# -- recommendation -----------------------------------------------------------

@attrs.frozen
class DoctorRule:
    """When a backend suits a machine; contributed by the backend (``edgesmith_doctor_rules``).

    ``applies(machine)`` returns the reason it suits this machine, or ``None``.
    Of the rules that apply, the highest ``priority`` wins (a portable stack
    uses a low one as the fallback for any CPU). ``quantizations`` maps weight
    bits to the label recommended for that width (``{8: "Q8_0", 4: "Q4_K_M"}``).
    """

    backend: str
    applies: Callable[[Machine], str | None] = attrs.field(eq=False)
    priority: int = 0
    quantizations: Mapping[int, str] = attrs.field(factory=dict)


def rules(manager: Any = None) -> list[DoctorRule]:
    """The doctor rules of every registered backend."""
    from .plugins import get_manager

    found = []
    for backend, contributed in (manager or get_manager()).contributions("edgesmith_doctor_rules"):
        found += [r for r in contributed if isinstance(r, DoctorRule) and r.backend == backend]
    return found


# Share of the budget weights may take; the rest is KV cache and runtime.
_WEIGHT_SHARE = 0.6


@attrs.frozen
class Recommendation:
    backend: str
    quantization: str | None
    bits: int | None
    context_length: int | None
    reason: str
    installed: bool
    fallback: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


def choose_stack(m: Machine, found: list[DoctorRule] | None = None) -> tuple[str | None, str]:
    """The backend whose rule suits ``m`` best and why; ``(None, why)`` when none does."""
    found = rules() if found is None else found
    best: tuple[int, str, str] | None = None
    for rule in found:
        try:
            why = rule.applies(m)
        except Exception as exc:  # noqa: BLE001 - one backend's broken rule must not stop doctor
            log.warning("backend %s: doctor rule failed: %s: %s", rule.backend, type(exc).__name__, exc)
            continue
        if why and (best is None or rule.priority > best[0]):
            best = (rule.priority, rule.backend, why)
    if best is None:
        return None, "no installed backend has a rule for this machine (pip install edgesmith-llamacpp, ...)"
    return best[1], best[2]


def rule_of_thumb(m: Machine, found: list[DoctorRule],
                  refused: Mapping[str, str] | None = None) -> tuple[str | None, str]:
    """:func:`choose_stack` among the backends that can run the model; when the
    rule's first choice is in ``refused`` (backend → why not), the next one, saying so."""
    backend, why = choose_stack(m, found)
    refused = refused or {}
    if backend not in refused:
        return backend, why
    first, first_why = backend, why
    backend, why = choose_stack(m, [r for r in found if r.backend not in refused])
    note = f"{first} would suit this machine ({first_why}) but cannot run this model: {refused[first]}"
    return backend, (f"{note}; next by rule of thumb: {why}" if backend else note)


def recommend(m: Machine, *, params: int | None, budget_mb: float | None,
              kv_bytes_per_token: int | None = None,
              installed: Mapping[str, bool] | None = None,
              found: list[DoctorRule] | None = None,
              refused: Mapping[str, str] | None = None,
              measured: tuple[str, str] | None = None) -> Recommendation:
    """Backend, quantization and context length for a model of ``params`` parameters.

    ``refused`` maps backends that cannot run the model to the reason: none of
    them is recommended, nor offered as the fallback. ``measured`` is
    ``(backend, why)`` from a measurement on this machine, used instead of the rules.
    """
    found = rules() if found is None else found
    refused = refused or {}
    backend, why = measured if measured else rule_of_thumb(m, found, refused)
    ladder = next((r.quantizations for r in found if r.backend == backend and r.quantizations), {})
    budget = budget_mb * 2**20 if budget_mb else (m.memory_bytes or 8 * 2**30) * 0.5
    bits = label = None
    if params:
        for b in sorted(ladder, reverse=True):
            if params * b / 8 * 1.05 <= budget * _WEIGHT_SHARE:
                bits, label = b, ladder[b]
                break
        if bits is not None:
            room = "the KV cache" if kv_bytes_per_token else "its activations"
            why += f"; {label} is the widest that fits {budget / 2**20:.0f} MiB with room for {room}"
        elif ladder:
            smallest = min(ladder)
            need = params * smallest / 8 * 1.05 / _WEIGHT_SHARE / 2**20
            why += (f"; even {smallest}-bit weights do not fit {budget / 2**20:.0f} MiB "
                    f"(about {need:.0f} MiB needed): choose a smaller model or a larger budget")
    ctx = None
    if bits and kv_bytes_per_token:
        left = budget - params * bits / 8 * 1.05
        ctx = int(min(131072, max(0, left * 0.8) // kv_bytes_per_token) // 256 * 256) or None
    installed = installed or {}
    ok = bool(backend and installed.get(backend, False))
    fallback = None
    if backend and not ok:
        fallback = choose_stack(m, [r for r in found if installed.get(r.backend) and r.backend not in refused])[0]
        why += f"; edgesmith-{backend} is not usable here (see `edgesmith backends`)" + (
            f"; meanwhile {fallback} is" if fallback else "")
    return Recommendation(backend or "none", label, bits, ctx, why, ok, fallback)


def model_facts(path: str | Path) -> tuple[int | None, int | None]:
    """(parameters, KV-cache bytes per token at fp16) of a model on disk; an encoder
    has no KV cache (None)."""
    from . import api
    from .encoders import is_encoder

    info = api.inspect(path)
    params = info.get("parameters") or info.get("stored_elements")
    kv = None
    cfg_path = Path(path) / "config.json"
    if cfg_path.exists() and not is_encoder(path):
        import json

        c = json.loads(cfg_path.read_text())
        heads = c.get("num_attention_heads")
        if heads and c.get("hidden_size") and c.get("num_hidden_layers"):
            hd = c.get("head_dim") or c["hidden_size"] // heads
            kv = 2 * c["num_hidden_layers"] * c.get("num_key_value_heads", heads) * hd * 2
    return params, kv
