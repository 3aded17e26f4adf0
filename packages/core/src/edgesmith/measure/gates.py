"""Quality gates: thresholds an artifact must meet against the reference.

Defaults follow common practice for a usable quantized model: quality at least
95% of the reference's (perplexity at most 5% higher), the same top token at
least 90% of the time (what good 4-bit schemes reach on small models), at least
2x smaller, and not slower. A gate without a figure to check (no speed
measured, say) is reported as not checked and does not fail the verdict.
"""

from __future__ import annotations

from typing import Any

import attrs

#: Exit code of ``edgesmith eval`` when a gate (or the smoke test) fails.
EXIT_GATE_FAILED = 3
#: Exit code of ``bench``/``eval`` when an artifact could not be measured at all.
EXIT_MEASURE_FAILED = 4


@attrs.frozen
class Gates:
    max_ppl_ratio: float | None = 1.05
    min_top1: float | None = 0.90
    max_size_ratio: float | None = 0.5
    min_speedup: float | None = 1.0
    smoke: bool = True

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


# (gate, figure it reads, "max" or "min", option name)
_LIMITS = (
    ("max_ppl_ratio", "ppl_ratio", "max", "--max-ppl-ratio"),
    ("min_top1", "top1", "min", "--min-top1"),
    ("max_size_ratio", "size_ratio", "max", "--max-size-ratio"),
    ("min_speedup", "speedup", "min", "--min-speedup"),
)


def check(gates: Gates, figures: dict[str, Any]) -> list[dict[str, Any]]:
    """One record per gate: its limit, the figure, whether it passed and by how much."""
    out: list[dict[str, Any]] = []
    for name, key, kind, option in _LIMITS:
        limit = getattr(gates, name)
        value = figures.get(key)
        if limit is None:
            continue
        rec: dict[str, Any] = {"gate": name, "option": option, "figure": key, "limit": limit,
                               "value": value}
        if value is None:
            rec.update(passed=None, detail=f"{key} not measured; gate not checked")
        else:
            ok = value <= limit if kind == "max" else value >= limit
            miss = value - limit if kind == "max" else limit - value
            rec.update(passed=ok, margin=-miss,
                       detail=(f"{key} {value:.5g} {'<=' if kind == 'max' else '>='} {limit:g}" if ok
                               else f"{key} {value:.5g} is {miss:.4g} {'over' if kind == 'max' else 'under'} "
                                    f"the limit {limit:g} ({option})"))
        out.append(rec)
    if gates.smoke:
        smoke = figures.get("smoke")
        if smoke is None:
            out.append({"gate": "smoke", "option": "--no-smoke", "passed": None,
                        "detail": "smoke test not run"})
        else:
            out.append({"gate": "smoke", "option": "--no-smoke", "passed": bool(smoke["passed"]),
                        "detail": "greedy output looks like text" if smoke["passed"]
                        else "garbled output: " + "; ".join(smoke["failures"])})
    return out


def verdict(results: list[dict[str, Any]]) -> str:
    return "fail" if any(r["passed"] is False for r in results) else "pass"
