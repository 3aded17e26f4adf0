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


def _spread(s: dict[str, Any], spec: str) -> str:
    if s.get("median") is None:
        return "-"
    if s["min"] == s["max"]:
        return format(s["median"], spec)
    return f"{format(s['median'], spec)} ({format(s['min'], spec)}–{format(s['max'], spec)})"


def bench_table(doc: dict[str, Any]) -> None:
    from rich.table import Table

    s = doc["settings"]
    t = Table(title=f"edgesmith bench · {s['prompt_tokens']} prompt + {s['gen_tokens']} generated "
                    f"tokens · {s['repeat']} repeats · {s['threads']} threads · memory "
                    f"{doc['bandwidth']['gb_per_s']:.1f} GB/s")
    for col in ("artifact", "backend", "size MiB", "load s", "TTFT s", "prefill tok/s",
                "decode tok/s", "peak RSS MiB", "roofline"):
        t.add_column(col, justify="left" if col in ("artifact", "backend") else "right")
    for r in doc["artifacts"]:
        if r["status"] != "ok":
            t.add_row(r["name"], "[red]error (below)[/red]", _f(r["size_bytes"], ".2f", 2**-20),
                      *[""] * 6)
            continue
        t.add_row(r["name"], r["backend"].get("name", ""), _f(r["size_bytes"], ".2f", 2**-20),
                  _f(r["load_s"], ".2f"), _spread(r["ttft_s"], ".3f"), _spread(r["prefill_tps"], ".1f"),
                  _spread(r["decode_tps"], ".1f") + (" *" if r["eos_early"] else ""),
                  _f(r["peak_rss_mb"], ".0f"), _f(r["roofline_fraction"], ".1f", 100, "%"))
    _console().print(t)
    if any(r.get("eos_early") for r in doc["artifacts"]):
        click.echo("* end of sequence came before --gen-tokens; decode tok/s is over the tokens "
                   "generated", err=True)


def eval_table(doc: dict[str, Any]) -> None:
    from rich.table import Table

    s, ref = doc["settings"], doc["reference"]
    t = Table(title=f"edgesmith eval · {s['text']} · {s['scored_tokens']} tokens in {s['windows']} "
                    f"window{'s' if s['windows'] != 1 else ''} of {s['window']} · reference {ref['name']} "
                    f"(perplexity {ref['perplexity']:.3f})")
    for col in ("artifact", "backend", "size MiB", "size ratio", "perplexity", "ppl ratio", "KL",
                "top-1", "speedup", "smoke", "verdict"):
        t.add_column(col, justify="left" if col in ("artifact", "backend", "smoke", "verdict") else "right")
    for r in doc["artifacts"]:
        if r["status"] != "ok":
            t.add_row(r["name"], "", _f(r["size_bytes"], ".2f", 2**-20), *[""] * 7,
                      "[red]error (below)[/red]")
            continue
        colour = "green" if r["verdict"] == "pass" else "red"
        t.add_row(r["name"], r["backend"].get("name", ""), _f(r["size_bytes"], ".2f", 2**-20),
                  _f(r["size_ratio"], ".3f"), _f(r["perplexity"], ".3f"), _f(r["ppl_ratio"], ".4f"),
                  _f(r["kl"], ".4f"), _f(r["top1"], ".1f", 100, "%"), ("≈" if r.get("speed_source") == "smoke test" and r["speedup"] else "")
                  + _f(r["speedup"], ".2f", 1, "x"),
                  "ok" if r["smoke"]["passed"] else "[red]garbled[/red]",
                  f"[{colour}]{r['verdict']}[/{colour}]")
    _console().print(t)
    if any(r.get("speed_source") == "smoke test" and r.get("speedup") for r in doc["artifacts"]):
        click.echo("≈ speedup from the smoke-test generations; give --speed BENCH.json for bench's "
                   "figures", err=True)


def eval_notes(doc: dict[str, Any]) -> None:
    """Failures on stderr, with --json too: which artifact, which gate, by how much."""
    ref = doc["reference"]
    if not ref["smoke"]["passed"]:
        click.echo(f"edgesmith: note: the reference itself fails the smoke test "
                   f"({'; '.join(ref['smoke']['failures'])})", err=True)
    for r in doc["artifacts"]:
        for g in r.get("gates", []):
            if g["passed"] is False:
                click.echo(f"edgesmith: {r['name']}: gate {g['gate']} failed: {g['detail']}", err=True)
        if r["status"] != "ok":
            click.echo(f"edgesmith: {r['name']}: could not be evaluated: {r['error']}", err=True)
