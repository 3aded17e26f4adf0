"""The ``bench`` and ``eval`` commands. Importing this module loads click only;
the measuring code loads when a command runs."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from ..cliutil import progress, threads_option

# Exit codes (also in docs/measuring.md): 0 all measured and every gate passed,
# 2 a usage error, 3 a gate or the smoke test failed, 4 an artifact could not
# be measured (the others are still reported).
from .gates import EXIT_MEASURE_FAILED


class _Limit(click.ParamType):
    """A gate limit: a number, or ``off`` to disable the gate."""

    name = "number|off"

    def convert(self, value: Any, param: Any, ctx: Any) -> float | None:
        if value is None or isinstance(value, float):
            return value
        if str(value).lower() in ("off", "none"):
            return None
        try:
            return float(value)
        except ValueError:
            self.fail(f"{value!r} is not a number or 'off'", param, ctx)


LIMIT = _Limit()


def _common(f: Any) -> Any:
    for opt in reversed([
        threads_option,
        click.option("--backend", "-b", metavar="NAME", help="Use this backend for every artifact."),
        click.option("--option", "-O", "options", multiple=True, metavar="KEY=VALUE",
                     help="Backend setting (repeatable); `edgesmith backends NAME` lists them."),
        click.option("--text", type=click.Path(), help="UTF-8 text file (default: the shipped text)."),
        click.option("--timeout", type=click.FloatRange(min=1), help="Seconds allowed per artifact."),
        click.option("--json", "as_json", is_flag=True, help="Print results as JSON."),
        click.option("--report", type=click.Path(dir_okay=False),
                     help="Write a self-contained HTML report here (PNG charts beside it)."),
        click.option("--force", is_flag=True, help="Replace --report (and --certify) files that exist."),
    ]):
        f = opt(f)
    return f


def _emit(doc: dict[str, Any], as_json: bool, human: Any) -> None:
    if as_json:
        click.echo(json.dumps(doc, indent=2, default=str))
    else:
        human(doc)


def _read_json(path: str | None, schema: str) -> dict[str, Any] | None:
    from ..errors import UserError

    if not path:
        return None
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {path} ({exc}); give a file written by `edgesmith "
                        f"{schema.split('.')[1]} --json`") from exc
    if doc.get("schema", "").split("/")[0] != schema:
        raise UserError(f"{path} is not an `edgesmith {schema.split('.')[1]} --json` result")
    return doc


def _bench_speeds(doc: dict[str, Any] | None) -> dict[str, float]:
    """Median decode tokens/s by artifact path from a bench result."""
    return {r["path"]: r["decode_tps"]["median"] for r in (doc or {}).get("artifacts", [])
            if r.get("status") == "ok"}


@contextlib.contextmanager
def _claimed_files(files: dict[str, str | None], force: bool,
                   sources: tuple[str, ...]) -> Iterator[dict[str, Path]]:
    """Claim every output file before measuring starts (a second run on the same
    file fails at once); each is written to its staging path and moved into
    place when the command succeeds. Yields ``{key: staging path}``."""
    from ..claim import atomic_output
    from .report import check_charts

    with contextlib.ExitStack() as stack:
        staged = {}
        for key, path in files.items():
            if path:
                if key == "report":
                    check_charts(Path(path), force)
                staged[key] = stack.enter_context(atomic_output(Path(path), force, sources=sources,
                                                                kind="file"))
        yield staged


def _report(path: str, staged: Path, bench: Any, evaluation: Any) -> None:
    from . import report

    files = report.write(path, bench=bench, evaluation=evaluation, html_to=staged)
    click.echo(f"edgesmith: report: {path} (charts: {', '.join(str(p.name) for p in files[1:])})",
               err=True)


@click.command("bench", short_help="Speed and memory of artifacts, side by side.")
@click.argument("artifacts", nargs=-1, required=True, type=click.Path())
@click.option("--prompt-tokens", "-N", default=128, show_default=True, type=click.IntRange(min=1),
              help="Prompt length in the artifact's own tokens.")
@click.option("--gen-tokens", "-M", default=64, show_default=True, type=click.IntRange(min=2),
              help="Tokens to generate (greedy) per repeat.")
@click.option("--repeat", "-K", default=3, show_default=True, type=click.IntRange(min=1),
              help="Timed repeats after the warm-up.")
@click.option("--warmup", default=1, show_default=True, type=click.IntRange(min=0),
              help="Untimed generations first.")
@_common
@click.option("--bandwidth-mib", type=click.IntRange(min=1), hidden=True,
              help="Array size of the bandwidth copy (default 256 MiB; tests use less).")
@click.option("--quality", type=click.Path(dir_okay=False),
              help="An `edgesmith eval --json` result to show quality in the report.")
def bench(artifacts: tuple[str, ...], prompt_tokens: int, gen_tokens: int, repeat: int, warmup: int,
          threads: int | None, backend: str | None, options: tuple[str, ...], text: str | None,
          timeout: float | None, as_json: bool, report: str | None, force: bool,
          bandwidth_mib: int | None, quality: str | None) -> None:
    """Measure speed and memory of each ARTIFACT, each in its own process."""
    from ..util import parse_options
    from . import bench as bench_mod
    from . import tables

    quality_doc = _read_json(quality, "edgesmith.eval")
    if report:
        from .report import require_matplotlib

        require_matplotlib()
    with _claimed_files({"report": report}, force, artifacts) as staged:
        with progress() as tell:
            doc = bench_mod.bench(list(artifacts), prompt_tokens=prompt_tokens, gen_tokens=gen_tokens,
                                  repeat=repeat, warmup=warmup, threads=threads, backend=backend,
                                  options=parse_options(options), text=text, timeout=timeout,
                                  bandwidth_bytes=bandwidth_mib * 2**20 if bandwidth_mib else None,
                                  progress=lambda m: tell(m))
        _emit(doc, as_json, tables.bench_table)
        if report:
            _report(report, staged["report"], doc, quality_doc)
    failed = [r for r in doc["artifacts"] if r["status"] != "ok"]
    for r in failed:
        click.echo(f"edgesmith: {r['name']}: could not be measured: {r['error']}", err=True)
    if failed:
        sys.exit(EXIT_MEASURE_FAILED)


@click.command("eval", short_help="Quality against a reference, smoke test and gates.")
@click.argument("artifacts", nargs=-1, required=True, type=click.Path())
@click.option("--reference", "-r", required=True, type=click.Path(),
              help="The model the artifacts are compared with (usually the unquantized one).")
@click.option("--window", "-W", default=512, show_default=True, type=click.IntRange(min=2),
              help="Tokens per scoring window (capped at the model's context).")
@click.option("--windows", "max_windows", type=click.IntRange(min=1),
              help="Score only the first N windows (default: the whole text).")
@click.option("--kl-top-k", default=256, show_default=True, type=click.IntRange(min=1),
              help="Reference tokens kept per position for the KL divergence.")
@click.option("--smoke-tokens", default=24, show_default=True, type=click.IntRange(min=1),
              help="Tokens generated per smoke-test prompt.")
@click.option("--max-ppl-ratio", default="1.05", show_default=True, type=LIMIT,
              help="Gate: highest perplexity / reference perplexity ('off' disables).")
@click.option("--min-top1", default="0.90", show_default=True, type=LIMIT,
              help="Gate: lowest top-1 agreement with the reference.")
@click.option("--max-size-ratio", default="0.5", show_default=True, type=LIMIT,
              help="Gate: highest size / reference size.")
@click.option("--min-speedup", default="1.0", show_default=True, type=LIMIT,
              help="Gate: lowest decode speed / reference decode speed.")
@click.option("--no-smoke", is_flag=True, help="Do not fail the verdict on the smoke test.")
@click.option("--certify", type=click.Path(dir_okay=False),
              help="Write a validation record (hashes, versions, figures, gates, verdict) here.")
@click.option("--speed", type=click.Path(dir_okay=False),
              help="An `edgesmith bench --json` result: its decode speeds feed the speed gate "
                   "(when it measured the reference too) and the report.")
@_common
def eval_(artifacts: tuple[str, ...], reference: str, window: int, max_windows: int | None,
          kl_top_k: int, smoke_tokens: int, max_ppl_ratio: float | None, min_top1: float | None,
          max_size_ratio: float | None, min_speedup: float | None, no_smoke: bool,
          certify: str | None, speed: str | None, threads: int | None, backend: str | None,
          options: tuple[str, ...], text: str | None, timeout: float | None, as_json: bool,
          report: str | None, force: bool) -> None:
    """Perplexity, KL divergence and top-1 agreement of each ARTIFACT against
    --reference, a smoke test of its output, and quality gates."""
    from ..util import parse_options
    from . import evaluate, tables
    from .gates import Gates

    speed_doc = _read_json(speed, "edgesmith.bench")
    if report:
        from .report import require_matplotlib

        require_matplotlib()
    gates = Gates(max_ppl_ratio=max_ppl_ratio, min_top1=min_top1, max_size_ratio=max_size_ratio,
                  min_speedup=min_speedup, smoke=not no_smoke)
    with _claimed_files({"report": report, "certify": certify}, force, (*artifacts, reference)) as staged:
        with progress() as tell:
            doc = evaluate.evaluate(list(artifacts), reference, text=text, window=window,
                                    max_windows=max_windows, top_k=kl_top_k, smoke_tokens=smoke_tokens,
                                    gates=gates, threads=threads, backend=backend,
                                    options=parse_options(options), timeout=timeout,
                                    speeds=_bench_speeds(speed_doc), progress=lambda m: tell(m))
        _emit(doc, as_json, tables.eval_table)
        tables.eval_notes(doc)
        if certify:
            staged["certify"].write_text(json.dumps(evaluate.certificate(doc), indent=2, default=str) + "\n")
            click.echo(f"edgesmith: validation record: {certify} (verdict: {doc['verdict']})", err=True)
        if report:
            _report(report, staged["report"], speed_doc, doc)
    code = evaluate.exit_code(doc)
    if code:
        sys.exit(code)


#: What ``edgesmith.cli`` registers: ``for c in commands: main.add_command(c)``.
commands = (bench, eval_)
