"""What llama.cpp contributes beyond its operations: optimize targets, doctor's
rule and the deploy README's commands. Cheap to import (no vendor stack)."""

from __future__ import annotations

from typing import Any

from edgesmith.hookspecs import hookimpl


def _snapdragon(m: Any) -> bool:
    return bool(m.snapdragon and m.npus)


@hookimpl
def edgesmith_optimize_targets() -> list[Any]:
    from edgesmith.optimize.targets import Candidate, Target

    return [
        Target("portable", "any CPU: laptops, phones, single-board computers (llama.cpp)", "cpu",
               ("llamacpp",), "gguf", {"dtype": "f16"},
               (Candidate("Q4_K_M", scheme="Q4_K_M"), Candidate("Q8_0", scheme="Q8_0")), rank=10),
        # Not offered by name: what snapdragon-npu falls back to for text generation.
        # llama.cpp repacks Q4_0 at load time for Arm's dot-product instructions.
        Target("snapdragon-cpu", "Snapdragon Oryon/Kryo CPU (llama.cpp, Q4_0 repacked for Arm)", "cpu",
               ("llamacpp",), "gguf", {"dtype": "f16"},
               (Candidate("Q4_0", scheme="Q4_0"), Candidate("Q8_0", scheme="Q8_0")),
               present=_snapdragon, offered=False, rank=60),
    ]


def _any_cpu(m: Any) -> str:
    isa = ", ".join(m.isa) or "no special ISA"
    return f"{m.cpu_vendor} {m.arch} CPU ({isa}): llama.cpp is the portable choice"


@hookimpl
def edgesmith_doctor_rules() -> list[Any]:
    from edgesmith.doctor import DoctorRule

    # The lowest priority: it applies to every CPU, so any more specific rule wins.
    return [DoctorRule("llamacpp", _any_cpu, priority=0,
                       quantizations={8: "Q8_0", 6: "Q6_K", 5: "Q5_K_M", 4: "Q4_K_M", 3: "Q3_K_M", 2: "Q2_K"})]


@hookimpl
def edgesmith_deploy_commands(format: str, path: str, entry: str) -> list[str] | None:  # noqa: A002
    if format != "gguf":
        return None
    return [f"llama-cli -m {entry} -cnv                      # llama.cpp",
            f"llama-server -m {entry} --host 127.0.0.1 --port 8080",
            f"python -c \"from llama_cpp import Llama; print(Llama('{entry}')('Hello', max_tokens=32))\""]
