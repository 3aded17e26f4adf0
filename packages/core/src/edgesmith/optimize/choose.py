"""The Pareto front of size, speed and quality, and the pick for a target.

A row is dominated when another is no larger, no slower and no worse in
perplexity, and strictly better in one of them. The pick is the best row by
the recipe's preference among those that pass the quality gates and fit the
memory budget; close calls (within a few percent, about the noise of a short
benchmark) go to the next criterion.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# Relative differences treated as a tie, per criterion.
_TIE = {"speed": 0.03, "size": 0.01, "quality": 0.005}


def _figures(r: dict[str, Any]) -> tuple[float, float, float] | None:
    if r.get("size_bytes") is None or r.get("decode_tps") is None or r.get("perplexity") is None:
        return None
    return float(r["size_bytes"]), float(r["decode_tps"]), float(r["perplexity"])


def pareto(rows: Sequence[dict[str, Any]]) -> set[str]:
    """Keys of the rows no other row dominates (rows lacking a figure are left out)."""
    pts = {r["key"]: f for r in rows if (f := _figures(r)) is not None}
    front = set()
    for k, (s, v, p) in pts.items():
        dominated = any(
            s2 <= s and v2 >= v and p2 <= p and (s2 < s or v2 > v or p2 < p)
            for k2, (s2, v2, p2) in pts.items() if k2 != k
        )
        if not dominated:
            front.add(k)
    return front


def _order(prefer: str) -> list[tuple[str, str, int]]:
    # (criterion, figure, sign: +1 when larger is better)
    crit = {"speed": ("speed", "decode_tps", 1), "size": ("size", "size_bytes", -1),
            "quality": ("quality", "perplexity", -1)}
    rest = [c for c in ("speed", "size", "quality") if c != prefer]
    return [crit[prefer], *(crit[c] for c in rest)]


def _better(a: dict[str, Any], b: dict[str, Any], prefer: str) -> bool:
    """Whether ``a`` beats ``b``: on the first criterion that differs beyond a tie."""
    for name, fig, sign in _order(prefer):
        x, y = a[fig], b[fig]
        if abs(x - y) > _TIE[name] * max(abs(x), abs(y)):
            return (x - y) * sign > 0
    return False


def _fits(r: dict[str, Any], budget_mb: float | None) -> str | None:
    if not budget_mb:
        return None
    used = r.get("peak_rss_mb")
    what = "peak RSS"
    if used is None:
        used, what = r["size_bytes"] / 2**20, "size"
    return None if used <= budget_mb else f"{what} {used:.0f} MiB is over the {budget_mb:.0f} MiB budget"


def _rejection(r: dict[str, Any], budget_mb: float | None) -> str | None:
    if r.get("errors"):
        return "could not be measured: " + r["errors"][0]
    if _figures(r) is None:
        return "lacks a size, speed or perplexity figure"
    if r.get("verdict") == "fail":
        return "; ".join(r.get("failed") or ["failed a gate"])
    return _fits(r, budget_mb)


def pick(rows: Sequence[dict[str, Any]], prefer: str, budget_mb: float | None) -> tuple[str | None, str]:
    """(key of the chosen row or None, the reason in one sentence or two)."""
    rejected = {r["key"]: why for r in rows if (why := _rejection(r, budget_mb))}
    ok = [r for r in rows if r["key"] not in rejected]
    names = {r["key"]: r["label"] for r in rows}
    tail = ("; not chosen: " + "; ".join(f"{names[k]} ({w})" for k, w in rejected.items())) if rejected else ""
    if not ok:
        return None, "no candidate passed the gates and the budget" + tail
    best = ok[0]
    for r in ok[1:]:
        if _better(r, best, prefer):
            best = r
    word = {"speed": f"the fastest ({best['decode_tps']:.1f} tok/s)",
            "size": f"the smallest ({best['size_bytes'] / 2**20:.1f} MiB)",
            "quality": f"the best perplexity ({best['perplexity']:.3f})"}[prefer]
    gates = ", ".join(g["detail"] for g in best.get("gates", []) if g.get("passed"))
    why = (f"{best['label']} is {word} of {len(ok)} that pass"
           + (f" ({gates})" if gates else " (it is the reference: quality gates compare against it)")
           + (", on the Pareto front" if best.get("pareto") else "")
           + tail)
    return best["key"], why
