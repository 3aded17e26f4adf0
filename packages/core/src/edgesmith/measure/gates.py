"""Quality gates: thresholds an artifact must meet against the reference.

Defaults follow common practice for a usable quantized model: quality at least
95% of the reference's (perplexity at most 5% higher), the same top token at
least 90% of the time (what good 4-bit schemes reach on small models), at least
2x smaller, and not slower.

A measured figure has noise, so a gate reads its 95 % interval: it passes when
the whole interval is on the passing side, fails when the whole interval is on
the failing side, and is otherwise undecided (more tokens, or more bench
repeats, would settle it). A figure without noise (size) is compared as it
is. A gate without a figure to check (no bench speed given, say) is reported
as not checked and does not change the verdict.
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


#: Figures more scored tokens make more precise (the sequential evaluation's business).
QUALITY_FIGURES = ("ppl_ratio", "top1")


def _decide(value: float, iv: dict[str, Any] | None, limit: float, kind: str) -> str:
    """pass, fail or undecided for one figure against its limit."""
    if iv is None:  # an exact figure
        return "pass" if (value <= limit if kind == "max" else value >= limit) else "fail"
    lo, hi = iv.get("lo"), iv.get("hi")
    if lo is None or hi is None:
        return "undecided"
    if kind == "max":
        return "pass" if hi <= limit else "fail" if lo > limit else "undecided"
    return "pass" if lo >= limit else "fail" if hi < limit else "undecided"


def _span(iv: dict[str, Any] | None) -> str:
    if not iv:
        return ""
    if iv.get("lo") is None:
        return " (no interval yet)"
    return f" (95 % interval {iv['lo']:.5g}–{iv['hi']:.5g})"


def check(gates: Gates, figures: dict[str, Any],
          intervals: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """One record per gate: its limit, the figure, its interval, and ``state``
    pass/fail/undecided/unchecked (``passed`` is True/False, or None for the last two)."""
    intervals = intervals or {}
    out: list[dict[str, Any]] = []
    for name, key, kind, option in _LIMITS:
        limit = getattr(gates, name)
        value = figures.get(key)
        if limit is None:
            continue
        rec: dict[str, Any] = {"gate": name, "option": option, "figure": key, "limit": limit,
                               "value": value}
        if value is None:
            why = ("no bench speed for it and the reference (give --speed BENCH.json)" if key == "speedup"
                   else "not measured")
            rec.update(state="unchecked", passed=None, detail=f"{key} {why}; gate not checked")
            out.append(rec)
            continue
        iv = intervals.get(key)
        state = _decide(value, iv, limit, kind)
        side = "<=" if kind == "max" else ">="
        miss = value - limit if kind == "max" else limit - value
        rec.update(state=state, passed={"pass": True, "fail": False}.get(state), margin=-miss,
                   interval=iv)
        if state == "pass":
            rec["detail"] = f"{key} {value:.5g} {side} {limit:g}{_span(iv)}"
        elif state == "fail":
            rec["detail"] = (f"{key} {value:.5g} is {abs(miss):.4g} {'over' if kind == 'max' else 'under'} "
                             f"the limit {limit:g} ({option}){_span(iv)}")
        else:
            rec["detail"] = f"{key} {value:.5g}: cannot tell from {limit:g} yet{_span(iv)}"
        out.append(rec)
    if gates.smoke:
        smoke = figures.get("smoke")
        if smoke is None:
            out.append({"gate": "smoke", "option": "--no-smoke", "state": "unchecked", "passed": None,
                        "detail": "smoke test not run"})
        else:
            ok = bool(smoke["passed"])
            out.append({"gate": "smoke", "option": "--no-smoke", "state": "pass" if ok else "fail",
                        "passed": ok, "detail": "greedy output looks like text" if ok
                        else "garbled output: " + "; ".join(smoke["failures"])})
    return out


def verdict(results: list[dict[str, Any]]) -> str:
    """fail when a gate failed, undecided when one could not be decided, else pass."""
    states = {r.get("state") for r in results}
    return "fail" if "fail" in states else "undecided" if "undecided" in states else "pass"


def wants_tokens(results: list[dict[str, Any]]) -> bool:
    """Whether scoring more of the text could still change the verdict."""
    return verdict(results) == "undecided" and any(
        r.get("state") == "undecided" and r.get("figure") in QUALITY_FIGURES for r in results)
