"""Human output of bench and eval: rich tables on stdout, failures on stderr."""

from __future__ import annotations

from typing import Any

import click


def _f(v: Any, spec: str, scale: float = 1.0, suffix: str = "") -> str:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return format(v * scale, spec) + suffix
    return "-"


def _console() -> Any:
    """stdout console; wide when piped so a log or file keeps one row per artifact."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=160)


def _pm(s: dict[str, Any] | None, spec: str) -> str:
    """mean ± sd of repeated runs (just the value when there was one run)."""
    from .uncertainty import text

    return text(s, spec) if s and s.get("mean") is not None else "-"


def bench_table(doc: dict[str, Any]) -> None:
    from rich.table import Table

    s = doc["settings"]
    many = len(s["tests"]) > 1
    t = Table(title=f"edgesmith bench · {', '.join(s['tests'])} · mean ± sd of {s['repeat']} repeats · "
                    f"{s['threads']} threads · memory read {doc['bandwidth']['gb_per_s']:.1f} GB/s")
    cols = ["artifact", "backend", "size MiB", "load s", *(["test"] if many else []), "TTFT s",
            "prefill tok/s", "decode tok/s", "peak RSS MiB", "roofline"]
    for col in cols:
        t.add_column(col, justify="left" if col in ("artifact", "backend", "test") else "right")
    for r in doc["artifacts"]:
        if r["status"] != "ok":
            t.add_row(r["name"], "[red]error (below)[/red]", _f(r["size_bytes"], ".2f", 2**-20),
                      *[""] * (len(cols) - 3))
            continue
        head = [r["name"], r["backend"].get("name", ""), _f(r["size_bytes"], ".2f", 2**-20), _f(r["load_s"], ".2f")]
        for n, x in enumerate(r["tests"] if many else [r]):
            if n:
                head = ["", "", "", ""]
            if x.get("skipped"):
                t.add_row(*head, x["name"], f"[yellow]skipped: {x['skipped']}[/yellow]", *[""] * 4)
                continue
            t.add_row(*head, *([x["name"]] if many else []), _pm(x["ttft_s"], ".3f"),
                      _pm(x["prefill_tps"], ".1f"),
                      _pm(x["decode_tps"], ".1f") + (" *" if x["eos_early"] else ""),
                      _f(r["peak_rss_mb"], ".0f") if not n else "",
                      _f(x["roofline_fraction"], ".1f", 100, "%"))
    _console().print(t)
    if any(r.get("eos_early") for r in doc["artifacts"]):
        click.echo("* end of sequence came before --gen-tokens; decode tok/s is over the tokens "
                   "generated", err=True)


def _iv(r: dict[str, Any], key: str, spec: str, scale: float = 1.0, suffix: str = "") -> str:
    from .uncertainty import text

    return text((r.get("intervals") or {}).get(key), spec, scale, suffix) if r.get(key) is not None else "-"


_VERDICT_COLOUR = {"pass": "green", "fail": "red", "undecided": "yellow"}


def task_cell(t: dict[str, Any] | None) -> str:
    """A task's accuracy as ``value ± stderr`` in percent (lm-eval's standard error)."""
    if not t or t.get("value") is None:
        return "-"
    se = f" ± {100 * t['stderr']:.1f}" if t.get("stderr") is not None else ""
    return f"{100 * t['value']:.1f}{se}"


def eval_table(doc: dict[str, Any]) -> None:
    from rich.table import Table

    s, ref = doc["settings"], doc["reference"]
    tasks = ref.get("tasks") or {}
    on_ref = "".join(f" · {name} {t.get('metric')} {task_cell(t)} %" for name, t in tasks.items())
    t = Table(title=f"edgesmith eval · {s['text']} · reference {ref['name']} (perplexity "
                    f"{_iv(ref, 'perplexity', '.3f')}{on_ref}) · windows of {s['window']} tokens · ± is the "
                    f"95 % interval" + (" (tasks: ± one standard error)" if tasks else ""))
    for col in ("artifact", "backend", "size ratio", "tokens", "perplexity", "ppl ratio", "KL", "KL p99",
                "top-1", "speedup"):
        t.add_column(col, justify="left" if col in ("artifact", "backend") else "right")
    for name, task in tasks.items():  # one column per task: accuracy ± stderr, in percent
        t.add_column(f"{name} {task.get('metric')} ± se %", justify="right")
    for col in ("smoke", "verdict"):
        t.add_column(col, justify="left")
    for r in doc["artifacts"]:
        if r["status"] != "ok":
            t.add_row(r["name"], "", *[""] * (9 + len(tasks)), "[red]error (below)[/red]")
            continue
        colour = _VERDICT_COLOUR[r["verdict"]]
        t.add_row(r["name"], r["backend"].get("name", ""), _f(r["size_ratio"], ".3f"), str(r["scored_tokens"]),
                  _iv(r, "perplexity", ".3f"), _iv(r, "ppl_ratio", ".4f"), _iv(r, "kl", ".4f"),
                  _iv(r, "kl_p99", ".3f"), _iv(r, "top1", ".1f", 100, "%"), _iv(r, "speedup", ".2f", 1, "x"),
                  *[task_cell((r.get("tasks") or {}).get(name)) for name in tasks],
                  "ok" if r["smoke"]["passed"] else "[red]garbled[/red]",
                  f"[{colour}]{r['verdict']}[/{colour}]")
    _console().print(t)


def eval_notes(doc: dict[str, Any]) -> None:
    """Failures on stderr, with --json too: which artifact, which gate, by how much."""
    ref = doc["reference"]
    if not ref["smoke"]["passed"]:
        click.echo(f"edgesmith: note: the reference itself fails the smoke test "
                   f"({'; '.join(ref['smoke']['failures'])})", err=True)
    for r in doc["artifacts"]:
        for g in r.get("gates", []):
            if g.get("state") in ("fail", "undecided"):
                word = "failed" if g["state"] == "fail" else "undecided"
                click.echo(f"edgesmith: {r['name']}: gate {g['gate']} {word}: {g['detail']}", err=True)
        if r.get("verdict") == "undecided" and r.get("stopped"):
            click.echo(f"edgesmith: {r['name']}: undecided after {r['scored_tokens']} tokens: {r['stopped']} "
                       f"(a larger --max-tokens or a longer --text may decide it)", err=True)
        if r.get("tasks_error"):
            click.echo(f"edgesmith: {r['name']}: the tasks could not run: {r['tasks_error']}", err=True)
        if r["status"] != "ok":
            click.echo(f"edgesmith: {r['name']}: could not be evaluated: {r['error']}", err=True)
