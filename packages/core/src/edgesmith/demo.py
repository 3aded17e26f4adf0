"""The demo job (``nox -s demo``): one model through every installed backend.

For each usable backend it plans a route from a Hugging Face checkpoint to a
format the backend runs (convert, then 4-bit quantize where offered), then
measures size, load time, decode speed and perplexity with the same
definitions, and prints one comparison table. Steps whose output already
exists are reused, so a rerun continues where the last one stopped.

Until ``edgesmith optimize`` lands this runs on a tiny checkpoint made on the
spot (random weights: the perplexities compare stacks, not model quality).
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import click

from . import api
from .errors import EdgesmithError
from .formats import detect
from .plugins import BackendRecord
from .types import RunRequest

PROMPT = "The morning train left the valley"
EVAL_TEXT = (
    "A river does not run straight. It bends around hard rock, digs into soft earth, and over "
    "many years moves its whole course across the plain."
)


def _route(rec: BackendRecord) -> tuple[str, bool] | None:
    """(format to convert to, whether to quantize it) for a backend, or None."""
    info = rec.info
    assert info is not None
    for a, b in info.converts:
        if a == "hf" and b in info.runs:
            return b, (b, b) in info.quantizes
    return None


def _step(out: Path, make: Any) -> Path:
    """Reuse a finished step (its manifest exists), else run it."""
    if (out / "edgesmith.json").exists():
        click.echo(f"  reusing {out}", err=True)
        return out
    return Path(make(out).path)


def _measure(path: Path, backend: str, tokens: int) -> dict[str, Any]:
    with api.load(path, backend=backend) as runner:
        result = runner.generate(RunRequest(prompt=PROMPT, max_tokens=tokens))
        ppl = None
        try:
            ids = runner.tokenize(EVAL_TEXT)
            lp = runner.logprobs(ids)
            nll = -sum(float(lp[i][ids[i + 1]]) for i in range(len(ids) - 1)) / (len(ids) - 1)
            ppl = math.exp(nll)
        except EdgesmithError as exc:
            click.echo(f"  {backend}: no perplexity ({exc})", err=True)
    t = result.timings
    return {
        "size_mib": detect(path).manifest["size_bytes"] / 2**20,
        "load_s": runner.load_s,
        "ttft_s": t.ttft_s,
        "decode_tps": t.decode_tps,
        "peak_rss_mb": t.peak_rss_mb,
        "perplexity": ppl,
        "tokens": result.generated_tokens,
        "sample": result.text[:40],
    }


def run_demo(out: Path, arch: str, tokens: int) -> list[dict[str, Any]]:
    from .testing import tiny_checkpoint

    out.mkdir(parents=True, exist_ok=True)
    source = out / f"source-{arch}"
    if not (source / "config.json").exists():
        click.echo(f"making a tiny {arch} checkpoint in {source}", err=True)
        tiny_checkpoint(source, arch)
    rows: list[dict[str, Any]] = []
    for rec in api.backends():
        if not rec.usable or not rec.info:
            click.echo(f"{rec.name}: skipped ({rec.status}: {rec.reason})", err=True)
            continue
        route = _route(rec)
        if route is None:
            click.echo(f"{rec.name}: skipped (it does not run a format it converts a Hugging Face "
                       f"checkpoint to)", err=True)
            continue
        fmt, quantizes = route
        click.echo(f"{rec.name}: hf -> {fmt}" + (" -> 4-bit" if quantizes else ""), err=True)
        try:
            t0 = time.perf_counter()
            base = _step(out / rec.name / "converted",
                         lambda o, fmt=fmt, name=rec.name: api.convert(source, fmt, o, backend=name))
            arts = [("converted", base)]
            if quantizes:
                arts.append(("4-bit", _step(out / rec.name / "q4",
                                            lambda o, b=base, name=rec.name: api.quantize(
                                                b, o, bits=4, backend=name))))
            for label, path in arts:
                row = {"backend": rec.name, "format": fmt, "variant": label, "path": str(path),
                       **_measure(path, rec.name, tokens)}
                rows.append(row)
            click.echo(f"  done in {time.perf_counter() - t0:.1f} s", err=True)
        except EdgesmithError as exc:
            click.echo(f"{rec.name}: failed: {exc}", err=True)
            rows.append({"backend": rec.name, "format": fmt, "variant": "error", "error": str(exc)})
    (out / "summary.json").write_text(json.dumps(rows, indent=2) + "\n")
    return rows


def _table(rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title="edgesmith demo: one model, every installed backend")
    for col in ("backend", "format", "variant", "size MiB", "load s", "TTFT s", "decode tok/s",
                "peak RSS MiB", "perplexity"):
        t.add_column(col, justify="left" if col in ("backend", "format", "variant") else "right")

    def f(v: Any, fmt: str) -> str:
        return fmt.format(v) if isinstance(v, (int, float)) else "-"

    for r in rows:
        if "error" in r:
            t.add_row(r["backend"], r["format"], "[red]error[/red]", r["error"][:60], *[""] * 5)
            continue
        t.add_row(r["backend"], r["format"], r["variant"], f(r["size_mib"], "{:.2f}"),
                  f(r["load_s"], "{:.2f}"), f(r["ttft_s"], "{:.3f}"), f(r["decode_tps"], "{:.0f}"),
                  f(r["peak_rss_mb"], "{:.0f}"), f(r["perplexity"], "{:.1f}"))
    Console().print(t)


@click.command()
@click.option("-o", "--output", default=".edgesmith-demo", show_default=True, type=click.Path())
@click.option("--arch", default="llama", show_default=True, help="Tiny model architecture.")
@click.option("--tokens", default=32, show_default=True, help="Tokens to generate per artifact.")
def main(output: str, arch: str, tokens: int) -> None:
    """Run the demo job and print the comparison table."""
    rows = run_demo(Path(output), arch, tokens)
    _table(rows)
    click.echo(f"summary: {Path(output) / 'summary.json'}", err=True)
    if not [r for r in rows if "error" not in r]:
        click.echo("edgesmith: error: no backend produced a result; see `edgesmith backends`", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
