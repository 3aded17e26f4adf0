"""What QNN contributes beyond its operations: the snapdragon-npu target,
doctor's rule and the deploy README's commands. Cheap to import."""

from __future__ import annotations

from typing import Any

from edgesmith.hookspecs import hookimpl


def _snapdragon_npu(m: Any) -> bool:
    return bool(m.snapdragon and m.npus)


@hookimpl
def edgesmith_optimize_targets() -> list[Any]:
    from edgesmith.optimize.targets import Candidate, Target

    # For a language model QNN generates no text yet: llama.cpp on the Snapdragon
    # CPU (its snapdragon-cpu target) is used instead when it is installed.
    return [Target("snapdragon-npu", "Snapdragon Hexagon NPU (QNN context binaries)", "npu", ("qnn",), "qnn", {},
                   (Candidate("a16w8", scheme="a16w8"),), compile="npu", present=_snapdragon_npu,
                   fallback="snapdragon-cpu", rank=50)]


def _applies(m: Any) -> str | None:
    if not _snapdragon_npu(m):
        return None
    return f"{m.snapdragon} with a Hexagon NPU: QNN context binaries run on the NPU"


@hookimpl
def edgesmith_doctor_rules() -> list[Any]:
    from edgesmith.doctor import DoctorRule

    return [DoctorRule("qnn", _applies, priority=40, quantizations={8: "a16w8", 4: "a16w4"})]


@hookimpl
def edgesmith_deploy_commands(format: str, path: str, entry: str) -> list[str] | None:  # noqa: A002
    if format != "qnn":
        return None
    return [f"python -c \"import onnxruntime as ort; "
            f"ort.InferenceSession('{entry}', providers=['QNNExecutionProvider'])\""]
