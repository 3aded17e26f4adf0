"""What Olive contributes beyond its operations: the nvidia-gpu target,
doctor's rule and the deploy README's commands. Cheap to import."""

from __future__ import annotations

from typing import Any

from edgesmith.hookspecs import hookimpl


def _nvidia(m: Any) -> bool:
    return bool(m.cuda_devices) or "NVIDIA GPU" in m.gpus


@hookimpl
def edgesmith_optimize_targets() -> list[Any]:
    from edgesmith.optimize.targets import Candidate, Target

    return [Target("nvidia-gpu", "NVIDIA GPUs (ONNX Runtime GenAI, built by Olive)", "gpu", ("olive",), "onnx",
                   {"dtype": "fp32", "provider": "cpu"},
                   (Candidate("int4-g32", bits=4, group_size=32), Candidate("int8", bits=8)),
                   present=_nvidia, device_options={"dtype": "fp16", "provider": "cuda"}, rank=40)]


def _applies(m: Any) -> str | None:
    return "NVIDIA GPU: ONNX Runtime GenAI with the CUDA provider (built by Olive)" if _nvidia(m) else None


@hookimpl
def edgesmith_doctor_rules() -> list[Any]:
    from edgesmith.doctor import DoctorRule

    return [DoctorRule("olive", _applies, priority=30, quantizations={8: "int8", 4: "int4 rtn b32"})]


@hookimpl
def edgesmith_deploy_commands(format: str, path: str, entry: str) -> list[str] | None:  # noqa: A002
    if format != "onnx":
        return None
    return ["python - <<'PY'                                    # onnxruntime-genai",
            "import onnxruntime_genai as og",
            f"model = og.Model('{path}')",
            "tok = og.Tokenizer(model)",
            "params = og.GeneratorParams(model)",
            "params.set_search_options(max_length=64)",
            "gen = og.Generator(model, params)",
            "gen.append_tokens(tok.encode('Hello'))",
            "while not gen.is_done():",
            "    gen.generate_next_token()",
            "print(tok.decode(gen.get_sequence(0)))",
            "PY"]
