"""Task accuracy for ``edgesmith eval --tasks``: lm-eval tasks through edgesmith's model.

Each model (the reference, then each artifact) runs the tasks in a worker of
this environment (the one with lm-eval), which loads it with
:func:`edgesmith.api.load` (so in its backend's environment) behind
:class:`edgesmith.lmeval.EdgesmithLM`. The worker is offline unless
downloads are allowed: ``datasets`` and ``huggingface_hub`` read the switches
once, when imported, so they are set before lm-eval is. Tasks are checked
first, in a worker of their own, so an unknown task or a dataset that would
have to be downloaded fails before any model is loaded.

The drop of an artifact's accuracy against the reference is in points (100 x
the difference of the shares). Its interval is the paired one over the
documents both answered (lm-eval logs each document's score) when there are
any, else the two standard errors combined; the gate passes when the whole
95 % interval is under ``--max-task-drop``, fails when it is wholly over, and
is otherwise undecided.
"""

from __future__ import annotations

import difflib
import math
import os
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..worker import progress

ALLOW_FLAG = "--allow-download"
#: Metrics read as "the" accuracy of a task, in this order; else its first metric.
PRIMARY = ("acc", "exact_match", "first_word", "acc_norm")


class TaskSpec:
    """What ``--tasks`` names: a shipped task, an lm-eval task or group, or a YAML file."""

    def __init__(self, spec: str):
        from ..taskdocs import SHIPPED, yaml_path

        self.spec = spec.strip()
        self.path: Path | None = None
        if self.spec.endswith((".yaml", ".yml")):
            self.path = Path(self.spec).expanduser().resolve()
            if not self.path.is_file():
                raise UserError(f"task file {spec} does not exist; give an lm-eval task YAML or a task name")
        elif self.spec in SHIPPED:
            self.path = yaml_path(self.spec)
        self.local = self.spec in SHIPPED

    @property
    def hub(self) -> bool:
        """A name lm-eval resolves from its own task folders (it may need a dataset download)."""
        return self.path is None


def parse(value: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """``--tasks a,b`` (or a list from a recipe) as a list of task specs."""
    if not value:
        return []
    items = value.split(",") if isinstance(value, str) else [x for v in value for x in str(v).split(",")]
    out = [x.strip() for x in items if x.strip()]
    dup = next((x for x in out if out.count(x) > 1), None)
    if dup:
        raise UserError(f"--tasks names {dup!r} twice; name each task once")
    return out


def require_lm_eval() -> None:
    import importlib.util

    if importlib.util.find_spec("lm_eval") is None:
        raise UserError("--tasks runs lm-evaluation-harness, which is not installed here; "
                        "pip install 'edgesmith[lmeval]'")


# -- in the worker -----------------------------------------------------------------

def _environment(allow_download: bool) -> None:
    from .. import offline

    if not allow_download:
        os.environ.update(offline.OFFLINE_ENV)
    else:
        os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # The worker's stdout is the protocol: no progress bars from lm-eval's loops.
    os.environ.setdefault("TQDM_DISABLE", "1")


def _manager(specs: list[TaskSpec]) -> Any:
    from ..lmeval import task_manager

    return task_manager(include_defaults=any(s.hub for s in specs))


def _loadable(specs: list[TaskSpec], tm: Any) -> list[Any]:
    """What TaskManager.load takes for each spec: a name, or a YAML file's config."""
    from lm_eval.tasks._yaml_loader import load_yaml

    out = []
    for s in specs:
        if s.path is not None and not s.local:
            out.append(load_yaml(s.path, resolve_func=True))
        else:
            out.append(s.spec)
    return out


def _dataset_of(spec: TaskSpec, tm: Any) -> str | None:
    entry = tm.task_index.get(spec.spec)
    cfg = (entry.cfg if entry is not None else None) or {}
    return cfg.get("dataset_path")


def _check(payload: dict[str, Any]) -> dict[str, Any]:
    """Load every task (names resolved, documents read) without a model; the answer
    names each task's output type and how many documents it has."""
    specs = [TaskSpec(s) for s in payload["tasks"]]
    allow = bool(payload.get("allow_download"))
    _environment(allow)
    progress("indexing lm-eval's tasks")
    tm = _manager(specs)
    known = set(tm.all_tasks)
    for s in specs:
        if s.hub and s.spec not in known:
            close = difflib.get_close_matches(s.spec, known, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise UserError(f"lm-eval has no task {s.spec!r}{hint}; give a task name (`lm_eval ls tasks`), "
                            f"one of edgesmith's (alice_continuation, alice_completion) or a task YAML file")
    out = []
    for s, item in zip(specs, _loadable(specs, tm), strict=True):
        progress(f"loading task {s.spec}")
        try:
            loaded = tm.load([item])
        except Exception as exc:
            dataset = _dataset_of(s, tm)
            if s.hub and not allow and dataset:
                raise UserError(f"task {s.spec!r} needs the dataset {dataset!r} from the Hugging Face Hub and "
                                f"it is not in the local cache; pass {ALLOW_FLAG} to let lm-eval download it "
                                f"(edgesmith downloads nothing unless allowed)") from exc
            raise UserError(f"task {s.spec!r} could not be loaded: {type(exc).__name__}: "
                            f"{str(exc).splitlines()[0] if str(exc) else ''}") from exc
        for name, task in loaded["tasks"].items():
            docs = task.eval_docs
            out.append({"spec": s.spec, "task": name, "output_type": task.OUTPUT_TYPE,
                        "documents": len(docs) if docs is not None else None,
                        "unsafe": bool(getattr(task.config, "unsafe_code", False))})
    unsafe = [t["task"] for t in out if t["unsafe"]]
    if unsafe:
        raise UserError(f"task {unsafe[0]!r} runs code the model writes; edgesmith does not run such tasks")
    return {"tasks": out}


def _metrics(entry: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for key, value in entry.items():
        metric, sep, filt = key.partition(",")
        if not sep or metric.endswith("_stderr") or not isinstance(value, (int, float)):
            continue
        name = metric if filt == "none" else f"{metric},{filt}"
        se = entry.get(f"{metric}_stderr,{filt}")
        out[name] = {"value": float(value), "stderr": float(se) if isinstance(se, (int, float)) else None}
    return out


def _primary(metrics: dict[str, Any]) -> str | None:
    return next((m for m in PRIMARY if m in metrics), next(iter(metrics), None))


def _run(payload: dict[str, Any]) -> dict[str, Any]:
    """Run the tasks on one model; per task its metrics and each document's score."""
    specs = [TaskSpec(s) for s in payload["tasks"]]
    _environment(bool(payload.get("allow_download")))
    import lm_eval

    from ..lmeval import EdgesmithLM

    tm = _manager(specs)
    progress("loading the model")
    with EdgesmithLM(artifact=payload["artifact"], backend=payload.get("backend"),
                     options=payload.get("options") or None, threads=payload.get("threads")) as lm:
        progress(f"running {', '.join(payload['tasks'])}" + (f" ({payload['limit']} documents each)"
                                                            if payload.get("limit") else ""))
        res = lm_eval.simple_evaluate(model=lm, tasks=_loadable(specs, tm), task_manager=tm,
                                      limit=payload.get("limit"), log_samples=True, bootstrap_iters=1000,
                                      random_seed=0, numpy_random_seed=1234, torch_random_seed=1234,
                                      fewshot_random_seed=1234)
        backend = lm.runner.backend
    # What was asked for: a task or group by its name (a tag's tasks when it was a tag).
    asked = {item if isinstance(item, str) else item.get("task") or item.get("group")
             for item in _loadable(specs, tm)}
    entries = {n: e for n, e in res["results"].items() if n in asked}
    if len(entries) < len(asked):
        entries.update({n: e for n, e in res["results"].items() if n not in entries})
    tasks: dict[str, Any] = {}
    for name, entry in entries.items():
        metrics = _metrics(entry)
        primary = _primary(metrics)
        samples = {}
        for doc in (res.get("samples") or {}).get(name, []):
            v = doc.get(primary) if primary else None
            if isinstance(v, (int, float, bool)) and doc.get("filter", "none") == "none":
                samples[str(doc["doc_id"])] = float(v)
        tasks[name] = {"metric": primary, "value": metrics[primary]["value"] if primary else None,
                       "stderr": metrics[primary]["stderr"] if primary else None,
                       "n": entry.get("sample_len") or len(samples) or None, "metrics": metrics,
                       "samples": samples}
    return {"backend": backend, "tasks": tasks, "lm_eval": lm_eval.__version__}


JOBS = {"check": _check, "run": _run}


def job(payload: dict[str, Any]) -> dict[str, Any]:
    """The worker's entry point (``edgesmith.measure.tasks:job``)."""
    return JOBS[payload["kind"]](payload)


# -- in the calling process ----------------------------------------------------------

def _worker(payload: dict[str, Any], threads: int | None, timeout: float | None,
            say: Any) -> dict[str, Any]:
    from .. import worker

    answer = worker.run("edgesmith.measure.tasks:job", payload, threads=threads,
                        on_progress=say, timeout=timeout)
    if answer.ok:
        return {"ok": True, "result": answer.result}
    return {"ok": False, "kind": answer.kind, "error": answer.error, "log": answer.log}


def check(tasks: list[str], *, allow_download: bool, timeout: float | None = None,
          say: Any = None) -> list[dict[str, Any]]:
    """Resolve and load ``tasks`` (no model); a UserError names the first problem."""
    require_lm_eval()
    for t in tasks:
        TaskSpec(t)  # a missing YAML file fails here, at once
    answer = _worker({"kind": "check", "tasks": tasks, "allow_download": allow_download}, None, timeout,
                     say or (lambda m: None))
    if not answer["ok"]:
        if answer["kind"] == "user":
            raise UserError(answer["error"])
        from .common import MeasureError

        raise MeasureError(f"the tasks could not be loaded: {answer['error']}")
    return answer["result"]["tasks"]


def run(path: Path, tasks: list[str], *, limit: int | None, allow_download: bool, backend: str | None,
        options: dict[str, str], threads: int | None, timeout: float | None, say: Any) -> dict[str, Any]:
    """``{"ok": True, "result": {...}}`` or the worker's failure, for one model."""
    payload = {"kind": "run", "artifact": str(path), "tasks": tasks, "limit": limit,
               "allow_download": allow_download, "backend": backend, "options": options, "threads": threads}
    return _worker(payload, threads, timeout, say)


def public(tasks: dict[str, Any]) -> dict[str, Any]:
    """Per task as the JSON result keeps it: figures, not every document's score."""
    return {name: {k: v for k, v in t.items() if k != "samples"} for name, t in tasks.items()}


def drop(ref: dict[str, Any], mine: dict[str, Any]) -> dict[str, Any]:
    """The accuracy drop in points (reference minus artifact), with its 95 % interval."""
    from . import uncertainty as unc

    if ref.get("value") is None or mine.get("value") is None:
        return {"value": None, "se": None, "lo": None, "hi": None, "df": 0, "method": None}
    common = sorted(set(ref.get("samples") or {}) & set(mine.get("samples") or {}))
    if len(common) >= 2:
        d = [100 * (ref["samples"][k] - mine["samples"][k]) for k in common]
        mean = sum(d) / len(d)
        sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (len(d) - 1))
        out = unc.interval(mean, sd / math.sqrt(len(d)), len(d) - 1)
        return {**out, "n": len(d), "method": "paired over documents"}
    value = 100 * (ref["value"] - mine["value"])
    if ref.get("stderr") is None or mine.get("stderr") is None:
        return {"value": value, "se": None, "lo": None, "hi": None, "df": 0, "method": None}
    se = 100 * math.sqrt(ref["stderr"] ** 2 + mine["stderr"] ** 2)
    n = min(int(ref["n"]), int(mine["n"])) if ref.get("n") and mine.get("n") else None
    # A group's aggregate has no document count of its own: many documents, so the normal quantile.
    return {**unc.interval(value, se, max(1, n - 1) if n else 10**6), "n": n,
            "method": "two standard errors combined"}


def gate(task: str, limit: float, iv: dict[str, Any] | None, error: str | None = None) -> dict[str, Any]:
    """A ``--max-task-drop`` record of the same shape as :func:`edgesmith.measure.gates.check`'s."""
    rec: dict[str, Any] = {"gate": "max_task_drop", "option": "--max-task-drop", "figure": f"task_drop.{task}",
                           "task": task, "limit": limit, "value": iv.get("value") if iv else None, "interval": iv}
    if error is not None:
        return {**rec, "state": "fail", "passed": False, "detail": f"task {task} could not run: {error}"}
    value = rec["value"]
    if value is None:
        return {**rec, "state": "unchecked", "passed": None, "detail": f"task {task}: no accuracy to compare"}
    lo, hi = iv.get("lo"), iv.get("hi")
    span = f" (95 % interval {lo:.3g}–{hi:.3g} points)" if lo is not None else " (no interval)"
    if lo is None or hi is None:
        state, detail = "undecided", f"task {task} drop {value:.3g} points: cannot tell from {limit:g} yet{span}"
    elif hi <= limit:
        state, detail = "pass", f"task {task} drop {value:.3g} <= {limit:g} points{span}"
    elif lo > limit:
        state, detail = "fail", (f"task {task} drop {value:.3g} points is {value - limit:.3g} over the limit "
                                 f"{limit:g} ({rec['option']}){span}")
    else:
        state, detail = "undecided", (f"task {task} drop {value:.3g} points: cannot tell from {limit:g} "
                                      f"yet{span}; more documents (--limit) may decide it")
    return {**rec, "state": state, "passed": {"pass": True, "fail": False}.get(state), "margin": limit - value,
            "detail": detail}


def evaluate_tasks(ref_path: Path, paths: list[Path], rows: dict[Path, dict[str, Any]], names: list[str], *,
                   limit: int | None, max_drop: float | None, allow_download: bool, common: dict[str, Any],
                   timeout: float | None, say: Any) -> dict[str, Any]:
    """The tasks step of ``eval``: run ``names`` on the reference, then on every artifact
    measured so far; each row gets its ``tasks`` (with the drop) and, with ``max_drop``,
    one gate per task (its verdict re-read). Returns the reference's ``tasks``."""
    from . import gates as gates_mod
    from .common import MeasureError

    kw = {"limit": limit, "allow_download": allow_download, "backend": common.get("backend"),
          "options": common.get("options") or {}, "threads": common.get("threads"), "timeout": timeout}
    answer = run(ref_path, names, say=lambda m: say(f"reference {ref_path}: tasks: {m}"), **kw)
    if not answer["ok"]:
        if answer["kind"] == "user":
            raise UserError(f"the reference {ref_path} cannot run the tasks: {answer['error']}")
        raise MeasureError(f"the reference {ref_path} could not run the tasks: {answer['error']}")
    ref = answer["result"]["tasks"]
    for n, path in enumerate(paths):
        row = rows[path]
        if row["status"] != "ok":
            continue
        answer = run(path, names, say=lambda m, n=n, path=path: say(f"[{n + 1}/{len(paths)}] {path}: tasks: {m}"),
                     **kw)
        error = None if answer["ok"] else answer["error"]
        mine = answer["result"]["tasks"] if answer["ok"] else {}
        row["tasks"] = {name: {**public({name: mine[name]})[name], "drop": drop(t, mine[name])}
                        for name, t in ref.items() if name in mine}
        if error is not None:
            row["tasks_error"] = error
        if max_drop is None:
            continue
        checks = [gate(name, max_drop, row["tasks"][name]["drop"]) if name in row["tasks"]
                  else gate(name, max_drop, None, error or "no result for this task") for name in ref]
        row["gates"] = [*row["gates"], *checks]
        before = row["verdict"]
        row["verdict"] = gates_mod.verdict(row["gates"])
        if row["verdict"] == "undecided" and before != "undecided":
            row["stopped"] = None  # more text would not help: the undecided gate's detail says what would
    return public(ref)
