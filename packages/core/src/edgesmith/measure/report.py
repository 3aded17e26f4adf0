"""The HTML report: one self-contained page (inline CSS, charts as base64 PNG)
that reads offline, plus the same charts as PNG files next to it.

It takes a bench result, an eval result, or both; rows are matched by path so
one page can show size, speed and quality side by side.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

from ..errors import OutputExistsError, UserError


def require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise UserError("--report draws charts with matplotlib, which is not installed; "
                        "pip install 'edgesmith[measure]'") from exc


def _evals(evaluation: dict[str, Any] | list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """One eval result, or several (``optimize`` has one reference per target)."""
    if not evaluation:
        return []
    return list(evaluation) if isinstance(evaluation, list) else [evaluation]


def merge(bench: dict[str, Any] | None,
          evaluation: dict[str, Any] | list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """One flat row per artifact with every figure known about it."""
    rows: dict[str, dict[str, Any]] = {}

    def row(path: str, name: str) -> dict[str, Any]:
        key = str(Path(path).resolve())
        return rows.setdefault(key, {"path": path, "name": name, "errors": []})

    for b in (bench or {}).get("artifacts", []):
        r = row(b["path"], b["name"])
        r.update(format=b.get("format"), size_bytes=b["size_bytes"], weights_bytes=b["weights_bytes"])
        if b["status"] != "ok":
            r["errors"].append(f"bench: {b['error']}")
            continue
        r.update(backend=b["backend"].get("name"), load_s=b["load_s"], ttft=b["ttft_s"],
                 ttft_s=b["ttft_s"]["mean"], prefill=b["prefill_tps"], prefill_tps=b["prefill_tps"]["mean"],
                 decode=b["decode_tps"], decode_tps=b["decode_tps"]["mean"], peak_rss_mb=b["peak_rss_mb"],
                 roofline=b["roofline_fraction"], eos_early=b["eos_early"])
    for ev in _evals(evaluation):
        ref = ev["reference"]
        r = row(ref["path"], ref["name"])
        r.setdefault("size_bytes", ref["size_bytes"])
        r.update(reference=True, perplexity=ref["perplexity"], ppl_ratio=1.0, kl=0.0, top1=1.0,
                 smoke=ref["smoke"]["passed"], intervals=ref.get("intervals") or {},
                 tasks=ref.get("tasks") or {})
        r.setdefault("backend", ref["backend"].get("name"))
        for e in ev["artifacts"]:
            r = row(e["path"], e["name"])
            r.setdefault("size_bytes", e["size_bytes"])
            if e["status"] != "ok":
                r["errors"].append(f"eval: {e['error']}")
                r["verdict"] = "error"
                continue
            r.setdefault("backend", e["backend"].get("name"))
            r.update(perplexity=e["perplexity"], ppl_ratio=e["ppl_ratio"], kl=e["kl"], top1=e["top1"],
                     kl_p99=e.get("kl_p99"), intervals=e.get("intervals") or {}, tasks=e.get("tasks") or {},
                     smoke=e["smoke"]["passed"], verdict=e["verdict"],
                     failed=[g["detail"] for g in e["gates"] if g.get("state") in ("fail", "undecided")])
            r.setdefault("decode_tps", e.get("decode_tps"))
    return list(rows.values())


# -- charts -------------------------------------------------------------------

def _mib(r: dict[str, Any]) -> float:
    return r["size_bytes"] / 2**20


def _figure(title: str, bars: int | None = None) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # Bar charts grow with the number of artifacts; scatter plots keep a fixed shape.
    height = 1.4 + 0.45 * bars if bars else 4.2
    fig, ax = plt.subplots(figsize=(7.5, height), dpi=110)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    return fig, ax


def _err(r: dict[str, Any], key: str, scale: float = 1.0) -> tuple[float, float]:
    """(below, above) the value: the arms of its 95 % interval, 0 when it has none."""
    f = (r.get("intervals") or {}).get(key) or {}
    if f.get("lo") is None:
        return 0.0, 0.0
    return (f["value"] - f["lo"]) * scale, (f["hi"] - f["value"]) * scale


def _label_points(ax: Any, xs: list[float], ys: list[float], names: list[str]) -> None:
    for x, y, n in zip(xs, ys, names, strict=True):
        ax.annotate(n, (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)


def charts(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """``{name: (title, matplotlib figure)}`` for every chart the data allows."""
    out: dict[str, Any] = {}
    fast = [r for r in rows if r.get("decode_tps")]
    if fast:
        fig, ax = _figure("Decode speed (mean ± sd of the repeats)", len(fast))
        names = [r["name"] for r in fast]
        mean = [r["decode_tps"] for r in fast]
        sd = [(r.get("decode") or {}).get("sd") or 0.0 for r in fast]
        ax.barh(names, mean, xerr=sd, color="#3b7dd8", capsize=3)
        ax.set_xlabel("decode tokens/s")
        ax.invert_yaxis()
        out["speed"] = ("Decode speed", fig)

        fig, ax = _figure("Size vs decode speed" + (" (colour: perplexity ratio)"
                                                     if any(r.get("ppl_ratio") for r in fast) else ""))
        xs, ys = [_mib(r) for r in fast], [r["decode_tps"] for r in fast]
        ratios = [r.get("ppl_ratio") for r in fast]
        if all(v is not None for v in ratios):
            sc = ax.scatter(xs, ys, c=ratios, cmap="RdYlGn_r", s=60, edgecolors="black")
            fig.colorbar(sc, ax=ax, label="perplexity ratio")
        else:
            ax.scatter(xs, ys, s=60, color="#3b7dd8", edgecolors="black")
        _label_points(ax, xs, ys, [r["name"] for r in fast])
        ax.set_xlabel("size on disk (MiB)")
        ax.set_ylabel("decode tokens/s")
        out["size-speed"] = ("Size vs speed", fig)
    roof = [r for r in rows if r.get("roofline") is not None]
    if roof:
        fig, ax = _figure("Decode as a share of memory bandwidth", len(roof))
        ax.barh([r["name"] for r in roof], [100 * r["roofline"] for r in roof], color="#8a5cc2")
        ax.set_xlabel("% of measured memory bandwidth")
        ax.invert_yaxis()
        out["roofline"] = ("Roofline", fig)
    qual = [r for r in rows if r.get("ppl_ratio") is not None]
    if qual:
        fig, ax = _figure("Size vs quality (labels: top-1 agreement)")
        xs, ys = [_mib(r) for r in qual], [r["ppl_ratio"] for r in qual]
        colours = ["#2e9d4f" if r.get("verdict") in ("pass", None) and r.get("smoke", True)
                   else "#d83b3b" for r in qual]
        arms = [_err(r, "ppl_ratio") for r in qual]
        ax.errorbar(xs, ys, yerr=[[a for a, _ in arms], [b for _, b in arms]], fmt="none", ecolor="#555",
                    capsize=3)
        ax.scatter(xs, ys, s=60, c=colours, edgecolors="black", zorder=3)
        _label_points(ax, xs, ys, [f"{r['name']} ({100 * (r.get('top1') or 0):.0f}%)" for r in qual])
        ax.set_xlabel("size on disk (MiB)")
        ax.set_ylabel("perplexity / reference perplexity (95 % interval)")
        out["size-quality"] = ("Size vs quality", fig)
        fig, ax = _figure("Top-1 agreement with the reference (95 % interval)", len(qual))
        arms = [_err(r, "top1", 100) for r in qual]
        ax.barh([r["name"] for r in qual], [100 * (r.get("top1") or 0) for r in qual],
                xerr=[[a for a, _ in arms], [b for _, b in arms]], color="#2e9d4f", capsize=3)
        ax.set_xlabel("% of positions with the reference's most likely token")
        ax.invert_yaxis()
        out["top1"] = ("Top-1 agreement", fig)
    return out


# -- page ---------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:72rem;
color:#1d2330;padding:0 1rem}
h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #d5d9e0}
table{border-collapse:collapse;font-size:.9rem;margin:.5rem 0}
th,td{border:1px solid #d5d9e0;padding:.3rem .55rem;text-align:right}
th{background:#f0f2f6}td.l,th.l{text-align:left}
.pass{color:#1f7a3a;font-weight:600}.fail,.error{color:#b42323;font-weight:600}
.undecided{color:#9a6a00;font-weight:600}
.charts{display:flex;flex-wrap:wrap;gap:1rem}.charts figure{margin:0;flex:1 1 30rem}
.charts img{max-width:100%;border:1px solid #d5d9e0}
code,pre{background:#f4f5f8;font-size:.85rem}pre{padding:.6rem;overflow-x:auto;white-space:pre-wrap}
dl{font-size:.9rem}dt{font-weight:600;margin-top:.4rem}dd{margin-left:1rem}
"""

# Marks the page when every chart image has decoded, so a headless browser test
# (and a curious reader with devtools) can tell the charts really render.
_CHECK = """
window.addEventListener('load', function () {
  var imgs = document.querySelectorAll('img.chart'), ok = 0;
  imgs.forEach(function (i) { if (i.complete && i.naturalWidth > 0) { ok++; } });
  document.body.setAttribute('data-charts', ok + '/' + imgs.length);
});
"""


def _fmt(v: Any, spec: str) -> str:
    return format(v, spec) if isinstance(v, (int, float)) and not isinstance(v, bool) else "–"


def _e(v: Any) -> str:
    return html.escape(str(v))


def _pm(f: dict[str, Any] | None, spec: str, scale: float = 1.0, suffix: str = "") -> str:
    from .uncertainty import text

    return _e(text(f, spec, scale, suffix)) if f else "–"


def _task_names(rows: list[dict[str, Any]]) -> dict[str, str | None]:
    """Every task of any row, with the metric read as its accuracy."""
    out: dict[str, str | None] = {}
    for r in rows:
        for name, t in (r.get("tasks") or {}).items():
            out.setdefault(name, t.get("metric"))
    return out


def _task_cell(t: dict[str, Any] | None) -> str:
    from .tables import task_cell

    text = task_cell(t)
    return "–" if text == "-" else _e(text)


def _table(rows: list[dict[str, Any]]) -> str:
    tasks = _task_names(rows)
    cols = [("artifact", "l"), ("backend", "l"), ("size MiB", ""), ("load s", ""), ("TTFT s", ""),
            ("prefill tok/s", ""), ("decode tok/s", ""), ("peak RSS MiB", ""), ("roofline", ""),
            ("perplexity", ""), ("ppl ratio", ""), ("KL", ""), ("KL p99", ""), ("top-1", ""),
            *[(f"{name} {metric} ± se %", "") for name, metric in tasks.items()],
            ("smoke", "l"), ("verdict", "l")]
    head = "".join(f'<th class="{c}">{_e(n)}</th>' for n, c in cols)
    body = []
    for r in rows:
        smoke = {True: '<span class="pass">ok</span>', False: '<span class="fail">garbled</span>'}.get(
            r.get("smoke"), "–")
        verdict = r.get("verdict") or ("reference" if r.get("reference") else "–")
        if r["errors"] and not r.get("verdict"):
            verdict = "error"
        iv = r.get("intervals") or {}
        cells = [
            f'<td class="l" title="{_e(r["path"])}">{_e(r["name"])}</td>',
            f'<td class="l">{_e(r.get("backend") or "–")}</td>',
            f"<td>{_fmt(_mib(r), '.2f')}</td>",
            f"<td>{_fmt(r.get('load_s'), '.2f')}</td>",
            f"<td>{_pm(r.get('ttft'), '.3f')}</td>",
            f"<td>{_pm(r.get('prefill'), '.1f')}</td>",
            f"<td>{_pm(r.get('decode'), '.1f')}{' *' if r.get('eos_early') else ''}</td>",
            f"<td>{_fmt(r.get('peak_rss_mb'), '.0f')}</td>",
            f"<td>{_fmt(100 * r['roofline'] if r.get('roofline') is not None else None, '.1f')}"
            f"{'%' if r.get('roofline') is not None else ''}</td>",
            f"<td>{_pm(iv.get('perplexity'), '.3f') if iv.get('perplexity') else _fmt(r.get('perplexity'), '.3f')}</td>",
            f"<td>{_pm(iv.get('ppl_ratio'), '.4f') if iv.get('ppl_ratio') else _fmt(r.get('ppl_ratio'), '.4f')}</td>",
            f"<td>{_pm(iv.get('kl'), '.4f') if iv.get('kl') else _fmt(r.get('kl'), '.4f')}</td>",
            f"<td>{_pm(iv.get('kl_p99'), '.3f')}</td>",
            f"<td>{_pm(iv.get('top1'), '.1f', 100, '%') if iv.get('top1') else _fmt(100 * r['top1'] if r.get('top1') is not None else None, '.1f')}</td>",
            *[f"<td>{_task_cell((r.get('tasks') or {}).get(name))}</td>" for name in tasks],
            f'<td class="l">{smoke}</td>',
            f'<td class="l"><span class="{_e(verdict)}">{_e(verdict)}</span></td>',
        ]
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _definitions(*docs: dict[str, Any] | None) -> str:
    items = []
    for d in docs:
        for k, v in ((d or {}).get("definitions") or {}).items():
            items.append(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>")
    return "<dl>" + "".join(items) + "</dl>"


def render(rows: list[dict[str, Any]], images: dict[str, tuple[str, bytes]],
           bench: dict[str, Any] | None, evaluation: dict[str, Any] | list[dict[str, Any]] | None,
           intro: str = "") -> str:
    evals = _evals(evaluation)
    doc = bench or (evals[0] if evals else {})
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
             f"<title>edgesmith report</title><style>{_CSS}</style></head><body>",
             "<h1>edgesmith report</h1>",
             f"<p>{_e(doc.get('created', ''))} · {_e(doc.get('environment', {}).get('processor', ''))}"
             f" · edgesmith {_e(doc.get('environment', {}).get('edgesmith', ''))}</p>",
             intro, "<h2>Results</h2>", _table(rows),
             "<p>Speeds are mean ± standard deviation of the timed repeats; quality figures are "
             "value ± half of their 95 % interval (windows of the text are the sampling unit). "
             "<i>undecided</i>: an interval straddles a gate's limit.</p>"]
    if any(r.get("eos_early") for r in rows):
        parts.append("<p>* end of sequence came before --gen-tokens in some repeats; the rate is "
                     "over the tokens generated.</p>")
    if images:
        parts.append("<h2>Charts</h2><div class='charts'>")
        for name, (title, png) in images.items():
            data = base64.b64encode(png).decode()
            parts.append(f"<figure><img class='chart' id='chart-{_e(name)}' alt='{_e(title)}' "
                         f"src='data:image/png;base64,{data}'><figcaption>{_e(title)}</figcaption></figure>")
        parts.append("</div>")
    problems = [(r["name"], e) for r in rows for e in r["errors"]]
    problems += [(r["name"], f) for r in rows for f in r.get("failed", [])]
    if problems:
        parts.append("<h2>Failures</h2><ul>")
        parts += [f"<li><b>{_e(n)}</b>: {_e(p)}</li>" for n, p in problems]
        parts.append("</ul>")
    if bench:
        bw = bench["bandwidth"]
        copy = f"; a streaming copy reaches {bw['copy_gb_per_s']:.2f} GB/s" if bw.get("copy_gb_per_s") else ""
        parts.append(f"<h2>Machine</h2><p>Memory bandwidth {bw['gb_per_s']:.2f} GB/s "
                     f"({_e(bw['method'])}, {bw['array_bytes'] // 2**20} MiB buffers, "
                     f"{bw['threads']} thread(s){_e(copy)}).</p>")
    if evals:
        parts.append("<h2>Smoke test samples</h2>")
        shown = set()
        for e in [x for ev in evals for x in (ev["reference"], *ev["artifacts"])]:
            if "smoke" not in e or e["path"] in shown:
                continue
            shown.add(e["path"])
            parts.append(f"<h3>{_e(e['name'])}</h3><pre>"
                         + _e("\n".join(f"{s['prompt']} → {s['text']!r}"
                                        + (f"   [{s['problem']}]" if s["problem"] else "")
                                        for s in e["smoke"]["samples"])) + "</pre>")
    settings = {k: d["settings"] for k, d in (("bench", bench), ("eval", evals[0] if evals else None)) if d}
    parts.append("<h2>Settings</h2><pre>" + _e(json.dumps(settings, indent=2)) + "</pre>")
    parts.append("<h2>Definitions</h2>" + _definitions(bench, evals[0] if evals else None))
    parts.append(f"<script>{_CHECK}</script></body></html>")
    return "\n".join(parts)


CHART_GLOB = "{stem}-*.png"


def check_charts(path: Path, force: bool) -> None:
    """The PNG charts written beside a report are outputs too: not replaced without ``--force``."""
    existing = sorted(path.parent.glob(CHART_GLOB.format(stem=path.stem))) if path.parent.is_dir() else []
    if existing and not force:
        raise OutputExistsError(f"{existing[0]} already exists (a chart of an earlier report); pass "
                                f"--force to replace it or choose another --report")


def write(path: str | Path, bench: dict[str, Any] | None = None,
          evaluation: dict[str, Any] | list[dict[str, Any]] | None = None, intro: str = "",
          html_to: Path | None = None) -> list[Path]:
    """Write the HTML page (to ``html_to`` when given: a staging file the caller
    moves to ``path``) and its PNG charts beside ``path``; returns the files."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = merge(bench, evaluation)
    images: dict[str, tuple[str, bytes]] = {}
    written = []
    for name, (title, fig) in charts(rows).items():
        buf = io.BytesIO()
        fig.tight_layout()
        fig.savefig(buf, format="png")
        plt.close(fig)
        png = buf.getvalue()
        images[name] = (title, png)
        out = path.with_name(f"{path.stem}-{name}.png")
        out.write_bytes(png)
        written.append(out)
    (html_to or path).write_text(render(rows, images, bench, evaluation, intro), encoding="utf-8")
    return [path, *written]
