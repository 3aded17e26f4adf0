"""What every command shares: click options, JSON output, progress on stderr.

The commands' modules (this package's ``cli``, ``measure.cli``,
``optimize.cli``, ``serve.cli``) import from here; the root ``cli`` only
assembles the group, so no command module imports another.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click

THREADS_HELP = "Compute threads (default: the physical cores, the same for every step)."


def threads_option(f: Callable) -> Callable:
    return click.option("--threads", type=click.IntRange(min=1), help=THREADS_HELP)(f)


def json_option(f: Callable) -> Callable:
    return click.option("--json", "as_json", is_flag=True, help="Print results as JSON.")(f)


def backend_options(f: Callable) -> Callable:
    f = click.option("--option", "-O", "options", multiple=True, metavar="KEY=VALUE",
                     help="Backend setting (repeatable); `edgesmith backends NAME` lists them.")(f)
    f = click.option("--backend", "-b", metavar="NAME",
                     help="Use this backend only (default: chosen from capabilities).")(f)
    return f


def output_options(f: Callable) -> Callable:
    f = click.option("--force", is_flag=True, help="Replace the output if it exists.")(f)
    f = click.option("-o", "--output", required=True, type=click.Path(),
                     help="Output directory (created; must not exist unless --force).")(f)
    return f


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def parse_pairs(pairs: tuple[str, ...]) -> dict[str, str]:
    from .util import parse_options

    return parse_options(pairs)


@contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send everything written to stdout to stderr while vendor stacks work.

    Some print to stdout (NNCF's bit-width tables, C libraries' logs), which
    would corrupt `--json` results; stdout carries only edgesmith's results.
    Done at the file-descriptor level too, for output from C code.
    """
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no fd 1 (a detached process): nothing to protect
        yield
        return
    try:
        os.dup2(2, 1)
        stream = sys.stdout
        sys.stdout = sys.stderr
        try:
            yield
        finally:
            sys.stdout = stream
    finally:
        sys.stderr.flush()
        os.dup2(saved, 1)
        os.close(saved)


@contextmanager
def progress(enabled: bool = True) -> Iterator[Callable[..., None]]:
    """A progress display on stderr; yields the callback for Context.progress.
    Stdout goes to stderr meanwhile (see :func:`stdout_to_stderr`)."""
    with stdout_to_stderr():
        yield from _display(enabled)


def _display(enabled: bool) -> Iterator[Callable[..., None]]:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    if not enabled or not console.is_terminal:
        last: list[str] = []

        def plain(description: str, completed: float | None = None, total: float | None = None) -> None:
            if not last or last[-1] != description:
                last.append(description)
                click.echo(f"edgesmith: {description}", err=True)

        yield plain
        return
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                  TimeElapsedColumn(), console=console, transient=True) as prog:
        task = prog.add_task("starting", total=None)

        def update(description: str, completed: float | None = None, total: float | None = None) -> None:
            prog.update(task, description=description, completed=completed or 0, total=total)

        yield update


def report_artifact(art: Any, as_json: bool) -> None:
    m = art.manifest or {}
    if as_json:
        echo_json({"path": str(art.path), "format": art.format, "entry": art.entry, "manifest": m})
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(show_header=False, box=None)
    t.add_row("output", str(art.path))
    t.add_row("format", art.format + (f" ({art.entry})" if art.entry else ""))
    t.add_row("backend", f"{m.get('backend', {}).get('name')} {m.get('backend', {}).get('version')}")
    t.add_row("size", mib(m.get("size_bytes")))
    t.add_row("took", f"{m.get('timings', {}).get('seconds', 0):.1f} s")
    for k, v in (art.details or {}).items():
        if isinstance(v, (str, int, float)):
            t.add_row(k, str(v))
    Console().print(t)


def mib(n: Any) -> str:
    return f"{n / 2**20:.2f} MiB" if isinstance(n, (int, float)) else "?"


# -- commands -----------------------------------------------------------------
