"""What ``optimize`` leaves behind: summary.json, report.html, README.md, and the
table it prints."""

from __future__ import annotations

import html
import json
import os
from pathlib import Path
from typing import Any

from ..measure import definitions
from ..measure.common import backend_versions
from ..measure.uncertainty import text

SCHEMA = "edgesmith.optimize/2"


def _row_out(r: dict[str, Any]) -> dict[str, Any]:
    # decode: mean, sd, n and 95 % interval of the bench repeats; intervals: se and
    # 95 % interval of every quality figure (definitions: "statistics", "intervals")
    keep = ("key", "label", "target", "backend", "format", "path", "reference", "size_bytes", "decode_tps",
            "decode", "ttft_s", "prefill_tps", "peak_rss_mb", "load_s", "roofline_fraction", "perplexity",
            "ppl_ratio", "kl", "kl_p99", "top1", "intervals", "scored_tokens", "smoke", "verdict", "gates",
            "failed", "pareto", "errors")
    return {k: r.get(k) for k in keep}


def summary(plan: Any, recipe: Any, machine: Any, steps: dict[str, Any], results: list[dict[str, Any]],
            bw: dict[str, Any], root: Path) -> dict[str, Any]:
    targets = []
    for res in results:
        t = res["target"]
        chosen = next((r for r in res["rows"] if r["key"] == res["chosen"]), None)
        targets.append({
            **t.to_dict(),
            "chosen": {"key": chosen["key"], "label": chosen["label"], "path": chosen["path"],
                       "format": chosen.get("format"), "backend": chosen.get("backend")} if chosen else None,
            "why": res["why"],
            "rows": [_row_out(r) for r in res["rows"]],
        })
    return {
        "schema": SCHEMA,
        "created": definitions.now(),
        "environment": definitions.environment(),
        "machine": machine.to_dict(),
        "model": {"path": str(plan.model), "format": plan.model_format},
        "output": str(root),
        "recipe": recipe.to_dict(),
        "plan": plan.to_dict(),
        "steps": steps,
        "bandwidth": bw,
        "definitions": {**definitions.BENCH, **definitions.EVAL},
        # Each backend that built or measured something: its version, the
        # environment it ran in and that environment's vendor versions.
        "backends": {name: backend_versions(name) for name in
                     sorted({r["backend"] for res in results for r in res["rows"] if r.get("backend")})},
        "targets": targets,
    }


# -- deployment notes ---------------------------------------------------------

def _native(backend: str | None, fmt: str | None, rel: str, entry: Path) -> list[str]:
    """The vendor's own way to run an artifact (no edgesmith needed), from the backend that made it."""
    from ..plugins import get_manager

    if not backend or not fmt:
        return []
    for _, lines in get_manager().contributions("edgesmith_deploy_commands", only=backend,
                                                 format=fmt, path=rel, entry=str(entry)):
        return [str(line) for line in lines]
    return []


def readme(s: dict[str, Any]) -> str:
    root = Path(s["output"])
    lines = ["# Deploying the chosen artifacts", "",
             f"Made by `edgesmith optimize` on {s['created']} from `{s['model']['path']}`.",
             "Paths are relative to this folder. Figures and the reasons for each choice are in "
             "`report.html` and `summary.json`.", ""]
    for t in s["targets"]:
        lines.append(f"## {t['name']}: {t['title']}")
        lines.append("")
        if t.get("skipped"):
            lines += [f"Not built: {t['skipped']}", ""]
            continue
        for n in t["notes"]:
            lines.append(f"> {n}")
        if t["notes"]:
            lines.append("")
        c = t["chosen"]
        if not c:
            lines += [f"Nothing chosen: {t['why']}", ""]
            continue
        rel = os.path.relpath(c["path"], root)
        entry = Path(rel)
        try:
            from ..formats import detect

            art = detect(c["path"])
            entry = Path(os.path.relpath(art.main_file, root))
        except Exception:  # the summary must still be written
            pass
        row = next(r for r in t["rows"] if r["key"] == c["key"])
        figs = []
        if row.get("size_bytes"):
            figs.append(f"{row['size_bytes'] / 2**20:.1f} MiB")
        if row.get("decode_tps"):
            figs.append(f"{text(row.get('decode'), '.1f')} tok/s decode")
        if row.get("ppl_ratio"):
            of = "the Hugging Face checkpoint" if s["plan"].get("reference") else "the base"
            figs.append(f"perplexity ×{text((row.get('intervals') or {}).get('ppl_ratio'), '.3f')} of {of}")
        # a competitor's row may win: its own stack runs it
        backend = row.get("backend") or t["backend"]
        lines += [f"Chosen: **{c['label']}** (`{rel}`, backend {backend}; {', '.join(figs)}).", "",
                  f"Why: {t['why']}", "", "```sh", *_native(backend, c.get("format"), rel, entry),
                  f"edgesmith run {rel} -p 'Hello' --max-tokens 32",
                  f"edgesmith serve {rel}                         # OpenAI-compatible, 127.0.0.1:8000",
                  "```", ""]
    return "\n".join(lines)


# -- report -------------------------------------------------------------------

def _intro(s: dict[str, Any]) -> str:
    e = html.escape
    items = []
    for t in s["targets"]:
        if t.get("skipped"):
            items.append(f"<li><b>{e(t['name'])}</b>: not built ({e(t['skipped'])})</li>")
            continue
        chosen = t["chosen"]["key"] if t["chosen"] else "nothing"
        notes = "".join(f"<br><small>{e(n)}</small>" for n in t["notes"])
        stacks = ", ".join(x for x in [t["backend"], *(c["backend"] for c in t.get("competitors") or [])] if x)
        items.append(f"<li><b>{e(t['name'])}</b> ({e(stacks)}): chose <b>{e(chosen)}</b> — "
                     f"{e(t['why'])}{notes}</li>")
    return ("<h2>Chosen per target</h2><p>Model: " + e(s["model"]["path"]) + "</p><ul>" + "".join(items)
            + "</ul><p>" + ("Every artifact, each target's base included, is scored against the Hugging Face "
                            "checkpoint run in full precision, on the same tokens: the bases' rows show their "
                            "own conversion fidelity." if s["plan"].get("reference") else
                            "Each target's quality is measured against its own unquantized base; perplexities "
                            "are comparable across targets (same text, same tokens).") + "</p>")


def write_all(root: Path, s: dict[str, Any], results: list[dict[str, Any]], bw: dict[str, Any]) -> None:
    from ..measure import report

    tmp = root / "summary.json.part"
    tmp.write_text(json.dumps(s, indent=2, default=str) + "\n")
    os.replace(tmp, root / "summary.json")
    (root / "README.md").write_text(readme(s), encoding="utf-8")
    bench_rows, seen = [], set()
    for res in results:
        for b in res["bench"]:
            if b["path"] not in seen:
                seen.add(b["path"])
                bench_rows.append(b)
    first = next((b.get("_settings") for b in bench_rows if b.get("_settings")), {})
    bench = {"schema": "edgesmith.bench/2", "created": s["created"], "environment": s["environment"],
             "settings": first, "definitions": definitions.BENCH, "bandwidth": bw, "artifacts": bench_rows}
    evals = [{**res["eval"], "settings": res["eval"]["reference"].get("_settings", {}),
              "definitions": definitions.EVAL} for res in results if res.get("eval")]
    try:
        report.require_matplotlib()
    except Exception as exc:  # the report needs matplotlib; everything else is written
        (root / "report.html").write_text(f"<p>{html.escape(str(exc))}</p>")
        return
    report.write(root / "report.html", bench=bench if bench_rows else None, evaluation=evals or None,
                 intro=_intro(s))


def table(s: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    ref = "the Hugging Face checkpoint" if s["plan"].get("reference") else "each target's base"
    t = Table(title=f"edgesmith optimize: {Path(s['model']['path']).name} · decode mean ± sd · quality ± "
                    f"half its 95 % interval, against {ref}")
    cols = ("target", "artifact", "size MiB", "decode tok/s", "TTFT s", "peak RSS MiB", "roofline", "perplexity",
            "ppl ×", "KL", "top-1", "gates", "front", "chosen")
    for c in cols:
        t.add_column(c, justify="left" if c in ("target", "artifact", "gates") else "right")

    def f(v: Any, spec: str) -> str:
        return format(v, spec) if isinstance(v, (int, float)) and not isinstance(v, bool) else "-"

    for tg in s["targets"]:
        if tg.get("skipped"):
            t.add_row(tg["name"], "[dim]not built[/dim]", *[""] * 11, "")
            continue
        for r in tg["rows"]:
            chosen = tg["chosen"] and tg["chosen"]["key"] == r["key"]
            if r["errors"]:
                gate = "[red]error[/red]"
            else:
                gate = {"pass": "[green]pass[/green]", "fail": "[red]fail[/red]",
                        "undecided": "[yellow]undecided[/yellow]"}.get(r.get("verdict"), "-")
            iv = r.get("intervals") or {}
            t.add_row(tg["name"], r["key"] + (" (base)" if r["key"] == tg.get("base") else ""),
                      f((r.get("size_bytes") or 0) / 2**20 if r.get("size_bytes") else None, ".1f"),
                      text(r.get("decode"), ".1f"), f(r.get("ttft_s"), ".3f"), f(r.get("peak_rss_mb"), ".0f"),
                      f(100 * r["roofline_fraction"] if r.get("roofline_fraction") is not None else None, ".0f"),
                      text(iv.get("perplexity"), ".2f"), text(iv.get("ppl_ratio"), ".3f"),
                      text(iv.get("kl"), ".4f"), text(iv.get("top1"), ".1f", 100), gate,
                      "★" if r.get("pareto") else "", "✔" if chosen else "")
    console = Console()
    if not console.is_terminal:  # a log or a pipe: do not squeeze the table to 80 columns
        console = Console(width=180)
    console.print(t)
