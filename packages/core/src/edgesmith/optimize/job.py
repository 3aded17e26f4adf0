"""``edgesmith optimize``: plan, build, measure, choose, write the outputs.

The output directory holds one folder per artifact (``<backend>/<label>``),
``summary.json``, ``report.html`` and ``README.md``; ``.optimize/`` keeps the
plan and the cached measurements that make a rerun resume.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..claim import claim
from ..errors import UserError
from . import choose, measuring
from . import plan as plan_mod
from .recipe import Recipe
from .recipe import load as load_recipe

Say = Callable[[str], None]
MARK = ".optimize"


def _check_output(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} is a file; give a directory for -o")
    if out.is_dir() and any(out.iterdir()) and not (out / MARK).is_dir() and not force:
        raise UserError(f"{out} exists and was not written by optimize; choose another -o "
                        f"(or pass --force to work in it anyway)")


def _check_model(path: Path, allow_pickle: bool) -> str:
    from ..formats import check_pickle, detect

    art = detect(path)
    check_pickle(art, allow_pickle)
    if art.format == "hf":
        cfg_file = path / "config.json"
        arches = json.loads(cfg_file.read_text()).get("architectures") or [] if cfg_file.exists() else []
        if arches and not any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in arches):
            raise UserError(f"{path} is a {arches[0]}, not a causal language model; optimize measures text "
                            f"generation (use convert/quantize/compile and `run --input` for other models)")
    return art.format


def optimize(
    model: str | Path | None,
    output: str | Path,
    *,
    targets: Sequence[str] | None = None,
    recipe: Recipe | str | Path | None = None,
    budget_mb: float | None = None,
    prefer: str | None = None,
    dry_run: bool = False,
    force: bool = False,
    threads: int | None = None,
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
    say: Say = lambda m: None,
    progress: Callable[..., None] | None = None,
) -> dict[str, Any]:
    """Run the whole job; returns the summary (also written to ``output/summary.json``).

    With ``dry_run`` nothing is built or measured and the plan is returned.
    """
    import attrs

    from .. import api
    from ..doctor import detect_machine
    from .default_model import default_model
    from .targets import resolve

    rec = recipe if isinstance(recipe, Recipe) else (load_recipe(recipe) if recipe else Recipe())
    if budget_mb is not None:
        if budget_mb <= 0:
            raise UserError(f"--budget-mb must be positive, got {budget_mb}")
        rec = attrs.evolve(rec, budget_mb=float(budget_mb))
    if prefer is not None:
        rec = attrs.evolve(rec, prefer=prefer)
    out = Path(output).resolve()
    _check_output(out, force)
    machine = detect_machine()
    names, how = resolve(list(targets or rec.targets or ["auto"]), machine, rec.known)
    model = model or rec.model
    if model is None:
        path = default_model(say, dry_run=dry_run)
    else:
        path = Path(model).expanduser()
        if not path.exists():
            raise UserError(f"{path} does not exist; give a model directory or file, or no MODEL for "
                            f"the default (SmolLM2-135M-Instruct)")
    path = path.resolve()
    fmt = _check_model(path, allow_pickle)
    records = {r.name: r for r in api.backends()}
    from .. import formats
    from ..architectures import model_type

    plan = plan_mod.build(path, fmt, names, rec.known, records, machine,
                          architecture=model_type(formats.detect(path)))
    plan.notes.insert(0, f"targets: {how}" if how else f"targets: {', '.join(names)}")
    if not any(t.backend for t in plan.targets):
        raise UserError("no target can be built here: " + "; ".join(f"{t.name}: {t.skipped}" for t in plan.targets)
                        + "; see `edgesmith backends`")
    for line in plan.describe():
        say(line)
    if dry_run:
        return {"schema": "edgesmith.optimize-plan/1", "plan": plan.to_dict(), "recipe": rec.to_dict()}

    _check_not_in_model(out, path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with claim(out):  # one optimize per directory at a time
        return _build_and_measure(plan, rec, machine, out, threads=threads,
                                  trust_remote_code=trust_remote_code, say=say, progress=progress)


def _check_not_in_model(out: Path, model: Path) -> None:
    """optimize writes into ``out``: it may hold the model, but not be it or lie inside it."""
    real_out, real_model = Path(os.path.realpath(out)), Path(os.path.realpath(model))
    if real_out == real_model or real_model in real_out.parents:
        raise UserError(f"-o {out} is inside the model {model}; edgesmith never writes into a source, "
                        f"choose an -o outside it")


def _build_and_measure(plan: plan_mod.Plan, rec: Recipe, machine: Any, out: Path, *, threads: int | None,
                       trust_remote_code: bool, say: Say, progress: Callable[..., None] | None) -> dict[str, Any]:
    from ..util import physical_cores

    (out / MARK).mkdir(parents=True, exist_ok=True)
    (out / MARK / "plan.json").write_text(json.dumps(plan.to_dict(), indent=2, default=str) + "\n")
    from .execute import Hashes, run_all

    steps = run_all(plan, out, say, threads=threads, trust_remote_code=trust_remote_code, progress=progress)
    threads = threads or physical_cores()
    cache = measuring.Cache(out, Hashes())
    say("measuring memory bandwidth")
    bw = measuring.bandwidth(cache, threads)
    results = [_measure_or_record(plan, t, out, steps, rec, cache, bw, threads, say) for t in plan.targets]
    from . import outputs

    summary = outputs.summary(plan, rec, machine, steps, results, bw, out)
    outputs.write_all(out, summary, results, bw)
    say(f"wrote {out / 'summary.json'}, {out / 'report.html'} and {out / 'README.md'}")
    return summary


def _measure_or_record(plan: plan_mod.Plan, t: plan_mod.TargetPlan, root: Path, steps: dict[str, Any],
                       rec: Recipe, cache: measuring.Cache, bw: dict[str, Any], threads: int,
                       say: Say) -> dict[str, Any]:
    """A target's measurements; any failure in them is recorded on the target with its
    reason and log, and the other targets go on (Ctrl-C still stops the run)."""
    from .execute import describe, keep_traceback

    try:
        return _measure_target(plan, t, root, steps, rec, cache, bw, threads, say)
    except Exception as exc:  # noqa: BLE001 - one target's failure must not cost the others
        why = f"measuring failed: {describe(exc)}"
        say(f"{t.name}: {why}")
        log = keep_traceback(root, t.name, exc)
        return {"target": t, "rows": [], "bench": [], "eval": None, "chosen": None,
                "why": f"{why} (traceback: {log})", "error": why}


def _measure_target(plan: plan_mod.Plan, t: plan_mod.TargetPlan, root: Path, steps: dict[str, Any],
                    rec: Recipe, cache: measuring.Cache, bw: dict[str, Any], threads: int,
                    say: Say) -> dict[str, Any]:
    """Bench and eval a target's reference and candidates; Pareto front and pick.

    With a plan reference (the Hugging Face checkpoint, run by the transformers
    backend) the base is scored against it like every candidate, so its own
    conversion fidelity shows and must pass the gates; without one the base is
    the reference and passes by definition. A target's competitor stacks are
    measured into the same rows (against the same reference, or each against its
    own base without one), so the pick compares them."""
    res: dict[str, Any] = {"target": t, "rows": [], "bench": [], "eval": None, "chosen": None, "why": None}
    if t.skipped:
        return res

    def done(key: str | None) -> bool:
        return bool(key) and (key == "model" or steps.get(key, {}).get("status") in ("done", "reused"))

    def where(key: str) -> Path:
        return plan.model if key == "model" else root / key

    groups = t.groups()
    rows: dict[str, dict[str, Any]] = {}
    for g in groups:
        labels = {k: lab for lab, k in g.candidates.items()}
        for key in [k for k in [g.reference, *g.candidates.values()] if k]:
            # a competitor's base is named by its stack: one table holds several bases
            label = labels.get(key) or ("base" if g is groups[0] else f"{g.backend} base")
            rows[key] = {"key": key, "label": label, "target": t.name, "backend": g.backend,
                         "path": str(where(key)), "reference": key == g.reference and not plan.reference,
                         "errors": []}
            _bench_row(rows[key], t.name, g.backend, where(key), done(key), steps, rec, cache, bw, threads,
                       res, say)
    if plan.reference:  # one reference for every row, whatever its stack
        _score(rows, [k for k in rows if not rows[k]["errors"]], plan.reference, None, plan, t.name,
               where, done, rec, cache, threads, res, say)
    else:  # each stack against its own base
        for g in groups:
            keys = [k for k in [g.reference, *g.candidates.values()] if k and not rows[k]["errors"]]
            _score(rows, keys, g.reference, g.backend, plan, t.name, where, done, rec, cache, threads, res, say)
    front = choose.pareto(list(rows.values()))
    for k, r in rows.items():
        r["pareto"] = k in front
    res["rows"] = list(rows.values())
    res["chosen"], res["why"] = choose.pick(res["rows"], rec.prefer, rec.budget_mb)
    say(f"{t.name}: chose {res['chosen'] or 'nothing'} — {res['why']}")
    return res


def _bench_row(row: dict[str, Any], target: str, backend: str | None, path: Path, built: bool,
               steps: dict[str, Any], rec: Recipe, cache: measuring.Cache, bw: dict[str, Any], threads: int,
               res: dict[str, Any], say: Say) -> None:
    """Bench one row's artifact (or record why it cannot be) into ``row`` and ``res``."""
    key = row["key"]
    if not built:
        row["errors"].append(steps.get(key, {}).get("error") or "its build step did not finish")
        return
    say(f"{target}: bench {key}")
    b, cached = measuring.bench_one(cache, path, backend, dict(rec.bench, text=rec.eval.get("text")),
                                    threads, bw, lambda m: say(f"{target}: bench {key}: {m}"))
    if cached:
        say(f"{target}: bench {key} — reused (measured earlier)")
    res["bench"].append({**b, "name": key})
    row.update(format=b.get("format"), size_bytes=b.get("size_bytes"))
    if b["status"] != "ok":
        row["errors"].append(f"bench: {b['error']}")
        return
    row.update(decode=b["decode_tps"], decode_tps=b["decode_tps"]["mean"], ttft_s=b["ttft_s"]["mean"],
               prefill_tps=b["prefill_tps"]["mean"], peak_rss_mb=b["peak_rss_mb"],
               load_s=b["load_s"], roofline_fraction=b.get("roofline_fraction"))


def _score(rows: dict[str, dict[str, Any]], ready: list[str], ref_key: str | None, backend: str | None,
           plan: plan_mod.Plan, target: str, where: Callable[[str], Path], done: Callable[[str | None], bool],
           rec: Recipe, cache: measuring.Cache, threads: int, res: dict[str, Any], say: Say) -> None:
    """Eval the ``ready`` rows against ``ref_key`` (the plan's Hugging Face reference, or
    their stack's base, which is then scored as exactly itself)."""
    from ..measure import gates as gates_mod

    own_base = None if plan.reference else ref_key
    scored = [k for k in ready if k != own_base]
    if not (ref_key and done(ref_key) and (plan.reference or own_base in ready)):
        for k in scored:
            rows[k]["errors"].append("no quality figures: the target has no runnable reference")
        return
    speeds = {str(where(k)): r["decode"] for k, r in rows.items() if r.get("decode")}
    say(f"{target}: eval against {ref_key}")
    ref, evrows, cached = measuring.eval_target(
        cache, where(ref_key), [where(k) for k in scored], backend, dict(rec.eval), rec.gates, threads, speeds,
        lambda m: say(f"{target}: eval: {m}"))
    if cached:
        say(f"{target}: eval — reused (measured earlier)")
    evaluated = [{**evrows[str(where(k))], "name": k} for k in scored]
    if res["eval"] is None:
        res["eval"] = {"reference": {**ref, "name": ref_key}, "artifacts": evaluated}
    else:  # a competitor stack's eval against its own base
        res["eval"].setdefault("others", []).append({"reference": {**ref, "name": ref_key}, "artifacts": evaluated})
    if own_base:
        # The base against itself: ratios of exactly 1, so only a size or speed gate
        # (or garbled output) fails it.
        exact = {"value": 1.0, "se": 0.0, "lo": 1.0, "hi": 1.0}
        checks = gates_mod.check(rec.gates, {"ppl_ratio": 1.0, "top1": 1.0, "size_ratio": 1.0,
                                             "speedup": 1.0, "smoke": ref["smoke"]})
        rows[own_base].update(perplexity=ref["perplexity"], ppl_ratio=1.0, top1=1.0, kl=0.0,
                              intervals={"ppl_ratio": exact, "top1": exact, **(ref.get("intervals") or {})},
                              smoke=ref["smoke"]["passed"], verdict=gates_mod.verdict(checks),
                              gates=checks, failed=_failed(checks))
    for k in scored:
        e = evrows[str(where(k))]
        if e["status"] != "ok":
            rows[k]["errors"].append(f"eval: {e['error']}")
            continue
        rows[k].update(perplexity=e["perplexity"], ppl_ratio=e["ppl_ratio"], kl=e["kl"], top1=e["top1"],
                       kl_p99=e.get("kl_p99"), intervals=e["intervals"], scored_tokens=e["scored_tokens"],
                       smoke=e["smoke"]["passed"], verdict=e["verdict"], gates=e["gates"],
                       failed=_failed(e["gates"]))


def _failed(checks: list[dict[str, Any]]) -> list[str]:
    """The gates that keep a row from being chosen: failed or undecided."""
    return [("undecided: " if g.get("state") == "undecided" else "") + g["detail"]
            for g in checks if g.get("state") in ("fail", "undecided")]
