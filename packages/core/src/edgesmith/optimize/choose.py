"""The Pareto front of size, speed and quality, and the pick for a target.

A row is dominated when another is no larger, no slower and no worse in
perplexity, and strictly better in one of them. The pick is the best row by
the recipe's preference among those that pass the quality gates (an
undecided gate is not a pass) and fit the memory budget. Two rows tie on
speed when the 95 % intervals of their mean decode speeds overlap, and on
quality when the intervals of their perplexity ratios overlap; a tie goes to
the next criterion. Sizes are exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..measure.uncertainty import overlap


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


def _order(prefer: str) -> list[str]:
    return [prefer, *(c for c in ("speed", "size", "quality") if c != prefer)]


def _figure(r: dict[str, Any], criterion: str) -> tuple[float, dict[str, Any] | None, int]:
    """(value, its interval or None when exact, +1 when larger is better)."""
    if criterion == "speed":
        return float(r["decode_tps"]), r.get("decode") or {}, 1
    if criterion == "size":
        return float(r["size_bytes"]), None, -1
    iv = (r.get("intervals") or {}).get("ppl_ratio")
    if iv is not None and r.get("ppl_ratio") is not None:
        return float(r["ppl_ratio"]), iv, -1
    return float(r["perplexity"]), {}, -1  # no interval: ties with anything


def _better(a: dict[str, Any], b: dict[str, Any], prefer: str) -> bool:
    """Whether ``a`` beats ``b``: on the first criterion where they do not tie."""
    for name in _order(prefer):
        if not _tie(a, b, name):
            return (_figure(a, name)[0] - _figure(b, name)[0]) * _figure(a, name)[2] > 0
    return False


def _tie(a: dict[str, Any], b: dict[str, Any], criterion: str) -> bool:
    x, ix, _ = _figure(a, criterion)
    y, iy, _ = _figure(b, criterion)
    return x == y or (ix is not None and iy is not None and overlap(ix, iy))


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
    if r.get("verdict") == "undecided":
        return "; ".join(r.get("failed") or ["a gate is undecided"]) + " (not chosen until decided)"
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
    tied = [r for r in ok if r is not best and _tie(r, best, prefer)]
    gates = ", ".join(g["detail"] for g in best.get("gates", []) if g.get("passed"))
    if best.get("reference"):
        gates = "it is the reference: quality gates compare against it"
    if tied:
        # The preferred figure did not separate them: say so, and what did.
        by = next((c for c in _order(prefer)[1:] if any(not _tie(best, r, c) for r in tied)), None)
        what = (f"ties on {prefer} within the noise with {', '.join(r['label'] for r in tied)} "
                f"({_fig(best, prefer)}); chosen among them by "
                + (f"{by} ({_fig(best, by)})" if by else "their order (nothing separates them)"))
    else:
        what = "is " + {"speed": "the fastest", "size": "the smallest", "quality": "the best"}[prefer] \
               + f" ({_fig(best, prefer)})"
    why = (f"{best['label']} {what}, of {len(ok)} that pass"
           + (f" ({gates})" if gates else "")
           + (", on the Pareto front" if best.get("pareto") else "")
           + tail)
    return best["key"], why


def _fig(r: dict[str, Any], criterion: str) -> str:
    return {"speed": _speed(r), "size": f"{r['size_bytes'] / 2**20:.1f} MiB",
            "quality": f"perplexity {r['perplexity']:.3f}"}[criterion]


def _speed(r: dict[str, Any]) -> str:
    from ..measure.uncertainty import text

    return text(r.get("decode"), ".1f") + " tok/s" if r.get("decode") else f"{r['decode_tps']:.1f} tok/s"
