"""What MLX contributes beyond its operations: the apple-silicon target,
doctor's rule and the deploy README's commands. Cheap to import."""

from __future__ import annotations

from typing import Any

from edgesmith.hookspecs import hookimpl


def _apple(m: Any) -> bool:
    return bool(m.apple_silicon)


@hookimpl
def edgesmith_optimize_targets() -> list[Any]:
    from edgesmith.optimize.targets import Candidate, Target

    return [Target("apple-silicon", "Apple M-series (MLX)", "gpu", ("mlx",), "mlx", {"dtype": "float16"},
                   (Candidate("4bit-g64", bits=4, group_size=64), Candidate("8bit-g64", bits=8, group_size=64)),
                   present=_apple, rank=30)]


def _applies(m: Any) -> str | None:
    return "Apple silicon: MLX runs on its unified memory and Metal GPU" if _apple(m) else None


@hookimpl
def edgesmith_doctor_rules() -> list[Any]:
    from edgesmith.doctor import DoctorRule

    return [DoctorRule("mlx", _applies, priority=50,
                       quantizations={b: f"{b}-bit g64" for b in (8, 6, 5, 4, 3, 2)})]


@hookimpl
def edgesmith_deploy_commands(format: str, path: str, entry: str) -> list[str] | None:  # noqa: A002
    if format != "mlx":
        return None
    return [f"python -m mlx_lm generate --model {path} --prompt 'Hello' --max-tokens 32",
            f"python -m mlx_lm server --model {path} --host 127.0.0.1"]
