"""Standard errors and 95 % intervals of the figures bench and eval print.

Quality figures are means over scored tokens, but tokens of one window are
not independent (a passage the model finds hard is hard for many tokens in a
row), so the unit of sampling is the window: a figure's standard error is the
cluster-robust one of a ratio estimator over windows, and its interval uses
Student's t with (windows - 1) degrees of freedom, which keeps a two-window
result honestly wide. The 99th percentile of KL is not a smooth mean, so its
interval comes from resampling whole windows (a fixed seed: the same data
give the same interval). Speed figures are means of repeated runs: mean, sd,
n and the t interval of the mean.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

#: Two-sided 97.5 % quantiles of Student's t for 1..30 degrees of freedom.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
         2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
         2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
_Z975 = 1.959964
#: Resamples for the percentile interval of KL's p99.
BOOTSTRAP = 1000


def t975(df: int) -> float:
    """The 97.5 % quantile of Student's t (a 95 % two-sided interval)."""
    if df < 1:
        return math.inf
    if df <= len(_T975):
        return _T975[df - 1]
    z = _Z975  # Cornish-Fisher expansion: within 1e-3 of the exact value past 30 df
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def interval(value: float, se: float | None, df: int, lo: float = -math.inf,
             hi: float = math.inf) -> dict[str, Any]:
    """``{"value", "se", "lo", "hi", "df"}``: value ± t·se, clipped to the figure's range."""
    if se is None or not math.isfinite(se) or df < 1:
        return {"value": value, "se": None, "lo": None, "hi": None, "df": df}
    half = t975(df) * se
    return {"value": value, "se": se, "lo": max(lo, value - half), "hi": min(hi, value + half), "df": df}


def ratio_mean(sums: Sequence[float], counts: Sequence[float]) -> tuple[float, float | None]:
    """(Σ sums / Σ counts, its cluster-robust standard error over the windows)."""
    a = np.asarray(sums, dtype=np.float64)
    n = np.asarray(counts, dtype=np.float64)
    total = n.sum()
    r = float(a.sum() / total)
    w = len(a)
    if w < 2:
        return r, None
    resid = (a - r * n) / total
    return r, float(math.sqrt(w / (w - 1) * (resid**2).sum()))


def mean_figure(sums: Sequence[float], counts: Sequence[float], lo: float = -math.inf,
                hi: float = math.inf) -> dict[str, Any]:
    """A per-token mean with its interval (windows are the sampling unit)."""
    r, se = ratio_mean(sums, counts)
    return interval(r, se, len(sums) - 1, lo, hi)


def exp_figure(log_sums: Sequence[float], counts: Sequence[float]) -> dict[str, Any]:
    """exp of a per-token mean (perplexity, perplexity ratio): interval on the log
    scale, then exponentiated, so it stays positive and asymmetric as it should."""
    r, se = ratio_mean(log_sums, counts)
    f = interval(r, se, len(log_sums) - 1)
    out = {"value": math.exp(r), "se": None, "lo": None, "hi": None, "df": f["df"]}
    if f["se"] is not None:
        # delta method for the standard error; the interval is the exact image of the log one
        out.update(se=math.exp(r) * f["se"], lo=math.exp(f["lo"]), hi=math.exp(f["hi"]))
    return out


def percentile_figure(per_window: Sequence[np.ndarray], q: float, seed: int = 0) -> dict[str, Any]:
    """The ``q`` percentile of the pooled per-token values, with a 95 % interval
    from resampling whole windows with replacement."""
    arrays = [np.asarray(a, dtype=np.float64) for a in per_window if len(a)]
    if not arrays:
        return {"value": None, "se": None, "lo": None, "hi": None, "df": 0}
    pooled = np.concatenate(arrays)
    value = float(np.percentile(pooled, q))
    w = len(arrays)
    if w < 2:
        return {"value": value, "se": None, "lo": None, "hi": None, "df": 0}
    # Sort once; a resample is a weight per token (how often its window was drawn).
    order = np.argsort(pooled, kind="stable")
    owner = np.concatenate([np.full(len(a), i) for i, a in enumerate(arrays)])[order]
    values = pooled[order]
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(w, np.full(w, 1.0 / w), size=BOOTSTRAP)  # (B, w) window multiplicities
    reps = np.empty(BOOTSTRAP)
    for b in range(BOOTSTRAP):
        cum = np.cumsum(draws[b][owner])
        reps[b] = values[min(len(values) - 1, int(np.searchsorted(cum, q / 100 * cum[-1])))]
    return {"value": value, "se": float(reps.std(ddof=1)), "lo": float(np.percentile(reps, 2.5)),
            "hi": float(np.percentile(reps, 97.5)), "df": w - 1, "method": f"bootstrap over windows ({BOOTSTRAP})"}


def speed_figure(values: Sequence[float | None]) -> dict[str, Any]:
    """mean, sd, n and the 95 % interval of the mean of repeated runs (plus the
    median, min and max the tables used to show)."""
    import statistics

    v = [float(x) for x in values if x is not None]
    if not v:
        return {"mean": None, "sd": None, "n": 0, "lo": None, "hi": None,
                "median": None, "min": None, "max": None}
    mean = statistics.fmean(v)
    sd = statistics.stdev(v) if len(v) > 1 else None
    f = interval(mean, sd / math.sqrt(len(v)) if sd is not None else None, len(v) - 1, lo=0.0)
    return {"mean": mean, "sd": sd, "n": len(v), "lo": f["lo"], "hi": f["hi"],
            "median": statistics.median(v), "min": min(v), "max": max(v)}


def speed_ratio(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """mean(a) / mean(b) with a 95 % interval from the two runs' spreads (delta
    method on the log scale, Welch-Satterthwaite degrees of freedom)."""
    if not a.get("mean") or not b.get("mean"):
        return {"value": None, "se": None, "lo": None, "hi": None, "df": 0}
    value = a["mean"] / b["mean"]
    if a.get("sd") is None or b.get("sd") is None:
        return {"value": value, "se": None, "lo": None, "hi": None, "df": 0}
    va = (a["sd"] / a["mean"]) ** 2 / a["n"]
    vb = (b["sd"] / b["mean"]) ** 2 / b["n"]
    if va + vb == 0:
        return {"value": value, "se": 0.0, "lo": value, "hi": value, "df": a["n"] + b["n"] - 2}
    df = int((va + vb) ** 2 / (va**2 / (a["n"] - 1) + vb**2 / (b["n"] - 1)))
    f = interval(math.log(value), math.sqrt(va + vb), max(1, df))
    return {"value": value, "se": value * f["se"], "lo": math.exp(f["lo"]), "hi": math.exp(f["hi"]), "df": f["df"]}


def overlap(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two figures' intervals overlap (a figure without one overlaps anything)."""
    if None in (a.get("lo"), a.get("hi"), b.get("lo"), b.get("hi")):
        return True
    return a["lo"] <= b["hi"] and b["lo"] <= a["hi"]


def text(f: dict[str, Any] | None, spec: str, scale: float = 1.0, suffix: str = "") -> str:
    """``value ± half-width`` (half of the 95 % interval, or ± sd for speeds)."""
    if not f:
        return "-"
    value = f.get("value", f.get("mean"))
    if value is None:
        return "-"
    out = format(value * scale, spec)
    if "sd" in f and "mean" in f:  # a speed: mean ± sd
        return out + (f" ± {format(f['sd'] * scale, spec)}" if f.get("sd") is not None else "") + suffix
    if f.get("lo") is None:
        return out + suffix
    half = max(f["hi"] - value, value - f["lo"]) * scale
    return f"{out} ± {format(half, spec)}{suffix}"
