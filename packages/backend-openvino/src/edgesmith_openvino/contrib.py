"""What OpenVINO contributes beyond its operations: the intel-cpu target,
doctor's rule and the deploy README's commands. Cheap to import."""

from __future__ import annotations

from typing import Any

from edgesmith.hookspecs import hookimpl


def _intel(m: Any) -> bool:
    return m.cpu_vendor == "Intel"


@hookimpl
def edgesmith_optimize_targets() -> list[Any]:
    from edgesmith.optimize.targets import Candidate, Target

    return [Target("intel-cpu", "Intel CPUs (OpenVINO)", "cpu", ("openvino",), "openvino", {"dtype": "fp16"},
                   (Candidate("int4-g64", bits=4, group_size=64), Candidate("int8", bits=8)),
                   present=_intel, rank=20)]


def _applies(m: Any) -> str | None:
    if not _intel(m):
        return None
    extra = " and its NPU" if "Intel NPU" in m.npus else (" and GPU" if "Intel GPU" in m.gpus else "")
    return f"Intel CPU{extra}: OpenVINO has kernels tuned for it"


@hookimpl
def edgesmith_doctor_rules() -> list[Any]:
    from edgesmith.doctor import DoctorRule

    return [DoctorRule("openvino", _applies, priority=20, quantizations={8: "int8_asym", 4: "int4_asym g64"})]


@hookimpl
def edgesmith_deploy_commands(format: str, path: str, entry: str) -> list[str] | None:  # noqa: A002
    if format != "openvino":
        return None
    return [f"python -c \"import openvino_genai as og; "
            f"print(og.LLMPipeline('{path}', 'CPU').generate('Hello', max_new_tokens=32))\""]
