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


class _Counts(click.ParamType):
    """Token counts: ``512`` or a sweep ``128,512,2048``."""

    name = "N[,N...]"

    def convert(self, value: Any, param: Any, ctx: Any) -> tuple[int, ...]:
        if isinstance(value, tuple):
            return value
        try:
            out = tuple(int(x) for x in str(value).split(",") if x.strip())
        except ValueError:
            self.fail(f"{value!r} is not a number or a comma-separated list of numbers", param, ctx)
        if not out or min(out) < 0:
            self.fail(f"{value!r}: give whole numbers of tokens (0 or more)", param, ctx)
        return out


COUNTS = _Counts()


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


def _bench_speeds(doc: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Decode figures (mean, sd, n) by artifact path from a bench result."""
    return {r["path"]: r["decode_tps"] for r in (doc or {}).get("artifacts", [])
            if r.get("status") == "ok" and r["decode_tps"].get("mean")}


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
@click.option("--prompt-tokens", "-N", type=COUNTS,
              help="Prompt length in the artifact's own tokens; a list (128,512,2048) sweeps prefill.  "
                   "[default: 128; 512 with --llama-bench]")
@click.option("--gen-tokens", "-M", type=click.IntRange(min=2),
              help="Tokens to generate (greedy) per repeat.  [default: 64; 128 with --llama-bench]")
@click.option("--depth", "depths", type=COUNTS,
              help="Also time decode with this many tokens already in the KV cache (a list sweeps).")
@click.option("--llama-bench", "llama_bench", is_flag=True,
              help="llama-bench's shapes: pp512 and tg128, 5 repeats, mean ± sd.")
@click.option("--repeat", "-K", type=click.IntRange(min=1),
              help="Timed repeats after the warm-up.  [default: 3; 5 with --llama-bench]")
@click.option("--warmup", default=1, show_default=True, type=click.IntRange(min=0),
              help="Untimed generations first.")
@_common
@click.option("--bandwidth-mib", type=click.IntRange(min=1), hidden=True,
              help="Buffer size of the bandwidth measurement (tests use a small one).")
@click.option("--quality", type=click.Path(dir_okay=False),
              help="An `edgesmith eval --json` result to show quality in the report.")
def bench(artifacts: tuple[str, ...], prompt_tokens: tuple[int, ...] | None, gen_tokens: int | None,
          depths: tuple[int, ...] | None, llama_bench: bool, repeat: int | None, warmup: int,
          threads: int | None, backend: str | None, options: tuple[str, ...], text: str | None,
          timeout: float | None, as_json: bool, report: str | None, force: bool,
          bandwidth_mib: int | None, quality: str | None) -> None:
    """Measure speed and memory of each ARTIFACT, each in its own process:
    prefill, decode (mean ± sd over the repeats), peak memory and the share of
    the machine's memory bandwidth decode reaches."""
    from ..util import parse_options
    from . import bench as bench_mod
    from . import tables

    preset = bench_mod.LLAMA_BENCH if llama_bench else {"prompt_tokens": (128,), "gen_tokens": 64, "repeat": 3}
    prompt_tokens = prompt_tokens or preset["prompt_tokens"]
    if min(prompt_tokens) < 1:
        raise click.BadParameter("prompt lengths must be at least 1 token", param_hint="'--prompt-tokens'")
    quality_doc = _read_json(quality, "edgesmith.eval")
    from . import encoder_bench  # encoders: latency at their fixed shape (encoder_bench.py)

    if report and encoder_bench.applies(artifacts):
        raise click.UsageError("--report does not chart encoders yet; use --json for their figures")
    if report:
        from .report import require_matplotlib

        require_matplotlib()
    with _claimed_files({"report": report}, force, artifacts) as staged:
        with progress() as tell:
            doc = bench_mod.bench(list(artifacts), prompt_tokens=prompt_tokens,
                                  gen_tokens=gen_tokens or preset["gen_tokens"], depths=depths or (),
                                  llama_bench=llama_bench, repeat=repeat or preset["repeat"], warmup=warmup,
                                  threads=threads, backend=backend,
                                  options=parse_options(options), text=text, timeout=timeout,
                                  bandwidth_bytes=bandwidth_mib * 2**20 if bandwidth_mib else None,
                                  progress=lambda m: tell(m))
        _emit(doc, as_json, encoder_bench.table if doc["schema"] == encoder_bench.SCHEMA else tables.bench_table)
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
@click.option("--max-tokens", default=16384, show_default=True, type=click.IntRange(min=2),
              help="Budget of scored tokens per artifact: rounds of windows go on while a gate is "
                   "undecided, up to this many.")
@click.option("--windows", "max_windows", type=click.IntRange(min=1),
              help="Score exactly N windows in one round (no sequential stop).")
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
              help="Gate: lowest decode speed / reference decode speed (from --speed BENCH.json only).")
@click.option("--no-smoke", is_flag=True, help="Do not fail the verdict on the smoke test.")
@click.option("--min-cosine", default="0.99", show_default=True, type=LIMIT,
              help="Encoders: gate on the lowest mean cosine similarity of the embeddings to the "
                   "reference's (--windows: sentences).")
@click.option("--certify", type=click.Path(dir_okay=False),
              help="Write a validation record (hashes, versions, figures, gates, verdict) here.")
@click.option("--speed", type=click.Path(dir_okay=False),
              help="An `edgesmith bench --json` result: its decode speeds feed the speed gate "
                   "(when it measured the reference too) and the report.")
@click.option("--tasks", "tasks", metavar="NAME[,NAME]",
              help="Also run these lm-evaluation-harness tasks (names, or task YAML files) on the reference "
                   "and every artifact: accuracy ± stderr per task. Shipped: alice_continuation, "
                   "alice_completion (needs edgesmith[lmeval]).")
@click.option("--limit", "task_limit", type=click.IntRange(min=1), metavar="N",
              help="Documents per task (default: all of them).")
@click.option("--max-task-drop", type=LIMIT, metavar="POINTS",
              help="Gate: highest accuracy drop against the reference, in points, per task (default off).")
@click.option("--allow-download", is_flag=True,
              help="Let lm-eval download the datasets of hub tasks (nothing is downloaded without it).")
@_common
def eval_(artifacts: tuple[str, ...], reference: str, window: int, max_tokens: int, max_windows: int | None,
          kl_top_k: int, smoke_tokens: int, max_ppl_ratio: float | None, min_top1: float | None,
          max_size_ratio: float | None, min_speedup: float | None, no_smoke: bool, min_cosine: float | None,
          certify: str | None, speed: str | None, tasks: str | None, task_limit: int | None,
          max_task_drop: float | None, allow_download: bool, threads: int | None, backend: str | None,
          options: tuple[str, ...], text: str | None, timeout: float | None, as_json: bool,
          report: str | None, force: bool) -> None:
    """Perplexity, KL divergence and top-1 agreement of each ARTIFACT against
    --reference (with 95 % intervals), a smoke test of its output, and quality
    gates: pass, fail, or undecided when the interval straddles the limit."""
    from ..util import parse_options
    from . import encoder_eval, evaluate, tables
    from .gates import Gates

    if report and encoder_eval.applies(artifacts, reference):
        raise click.UsageError("--report does not chart encoders yet; use --json for their figures")
    speed_doc = _read_json(speed, "edgesmith.bench")
    if report:
        from .report import require_matplotlib

        require_matplotlib()
    gates = Gates(max_ppl_ratio=max_ppl_ratio, min_top1=min_top1, max_size_ratio=max_size_ratio,
                  min_speedup=min_speedup, smoke=not no_smoke)
    with _claimed_files({"report": report, "certify": certify}, force, (*artifacts, reference)) as staged:
        with progress() as tell:
            doc = evaluate.evaluate(list(artifacts), reference, text=text, window=window,
                                    max_windows=max_windows, max_tokens=max_tokens, top_k=kl_top_k, smoke_tokens=smoke_tokens,
                                    gates=gates, threads=threads, backend=backend,
                                    options=parse_options(options), timeout=timeout,
                                    speeds=_bench_speeds(speed_doc), progress=lambda m: tell(m),
                                    tasks=tasks, task_limit=task_limit, max_task_drop=max_task_drop,
                                    allow_download=allow_download, min_cosine=min_cosine)
        if doc["schema"] == encoder_eval.SCHEMA:  # encoders: cosine of embeddings (encoder_eval.py)
            _emit(doc, as_json, encoder_eval.table)
        else:
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
