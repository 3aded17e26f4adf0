"""``edgesmith eval``: quality of each artifact against a reference model.

The evaluation is sequential. The reference scores a first round of windows
of the text (its worker also stores, per window, the distributions the others
are compared with), then each artifact in its own worker on the very same
token ids and windows. Every gate is then pass, fail or undecided by the 95 %
interval of its figure; the artifacts still undecided on a quality gate get
the next round (twice as many windows in all) until every verdict is decided,
the token budget is spent or the text ends. A clear case (a scrambled
artifact) stops after the first round; a close one spends the budget.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..scratch import scratch_dir
from ..util import physical_cores
from . import definitions
from . import gates as gates_mod
from . import uncertainty as unc
from .common import MeasureError, Progress, backend_versions, check_paths, sizes
from .isolation import run_worker

DEFAULT_WINDOW = 512
DEFAULT_TOP_K = 256
#: Scored tokens per artifact the sequential evaluation may spend (--max-tokens).
DEFAULT_MAX_TOKENS = 16384
#: Tokens of the first round (at least MIN_FIRST_WINDOWS windows): enough for a
#: clear case to be decided at once.
FIRST_ROUND_TOKENS = 2048
MIN_FIRST_WINDOWS = 4


def evaluate(
    artifacts: list[str | Path],
    reference: str | Path,
    *,
    text: str | Path | None = None,
    window: int = DEFAULT_WINDOW,
    max_windows: int | None = None,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    top_k: int = DEFAULT_TOP_K,
    smoke_tokens: int | None = None,
    gates: gates_mod.Gates | None = None,
    threads: int | None = None,
    backend: str | None = None,
    options: dict[str, str] | None = None,
    timeout: float | None = None,
    speeds: dict[str, Any] | None = None,
    progress: Progress | None = None,
    tasks: list[str] | str | None = None,
    task_limit: int | None = None,
    max_task_drop: float | None = None,
    allow_download: bool = False,
    min_cosine: float | None = 0.99,
) -> dict[str, Any]:
    """Evaluate ``artifacts`` against ``reference``; one record per artifact with its verdict.

    ``max_windows`` scores exactly that many windows (one round, no early stop);
    otherwise rounds go on while a verdict is undecided, up to ``max_tokens``
    scored tokens. ``speeds`` maps artifact paths to bench decode figures
    (``{"mean", "sd", "n"}`` as bench reports them); the speed gate reads those
    only, for artifacts benched together with the reference.

    ``tasks`` (lm-eval task names or YAML files) then run on the reference and
    every artifact (:mod:`edgesmith.measure.tasks`), ``task_limit`` documents
    each; ``max_task_drop`` gates the accuracy drop in points. Hub datasets are
    downloaded only with ``allow_download``.

    Encoders (:mod:`edgesmith.measure.encoder_eval`) are compared by the cosine of
    their embeddings instead, gated by ``min_cosine``; ``max_windows`` is then
    the number of sentences.
    """
    from . import encoder_eval
    from .text import load_text

    if encoder_eval.applies(artifacts, reference):  # encoders: embedding cosine (encoder_eval)
        return encoder_eval.evaluate(artifacts, reference, text=text, max_sentences=max_windows,
                                     min_cosine=min_cosine, threads=threads, backend=backend,
                                     options=options, timeout=timeout, progress=progress)
    if window < 2:
        raise UserError(f"--window must be at least 2 tokens, got {window}")
    if top_k < 1:
        raise UserError(f"--kl-top-k must be at least 1, got {top_k}")
    if max_windows is not None and max_windows < 1:
        raise UserError(f"--windows must be at least 1, got {max_windows}")
    if max_tokens < 2:
        raise UserError(f"--max-tokens must be at least 2, got {max_tokens}")
    from . import tasks as tasks_mod

    task_names = tasks_mod.parse(tasks)
    if task_limit is not None and task_limit < 1:
        raise UserError(f"--limit must be at least 1 document, got {task_limit}")
    if max_task_drop is not None and not task_names:
        raise UserError("--max-task-drop gates task accuracy; give the tasks with --tasks NAME[,NAME]")
    if max_task_drop is not None and max_task_drop < 0:
        raise UserError(f"--max-task-drop is a drop in points and must be 0 or more, got {max_task_drop:g}")
    gates = gates or gates_mod.Gates()
    paths = check_paths(artifacts)
    ref_path = check_paths([reference])[0]
    body, text_name = load_text(text)
    threads = threads or physical_cores()
    say = progress or (lambda message: None)
    common = {"backend": backend, "options": options or {}, "threads": threads,
              "text": str(text) if text else None}
    if smoke_tokens:
        common["smoke_tokens"] = smoke_tokens
    known = {str(Path(p).resolve()): _speed(v) for p, v in (speeds or {}).items() if v}
    if task_names:  # an unknown task or a download not allowed fails before any model is loaded
        tasks_mod.check(task_names, allow_download=allow_download, timeout=timeout, say=say)
    with scratch_dir("eval") as work:
        session = _Session(work, ref_path, paths, common, top_k, window, timeout, say)
        first = max_windows or min(max(MIN_FIRST_WINDOWS, math.ceil(FIRST_ROUND_TOKENS / window)),
                                   max(1, max_tokens // window))
        session.round(list(range(first)), session.pending)
        budget = max_windows or max(1, max_tokens // session.width)
        budget = min(budget, session.available)
        while True:
            rows = {p: _row(p, session, gates, known) for p in paths}
            open_ = [p for p in session.pending if rows[p]["status"] == "ok"
                     and gates_mod.wants_tokens(rows[p]["gates"])]
            done = len(session.ref_scored)
            if not open_ or done >= budget:
                break
            session.round(list(range(done, min(budget, 2 * done))), open_)
        for p in paths:
            rows[p]["stopped"] = _stop_reason(rows[p], len(session.ref_scored), budget, session.available)
    ref_tasks = None
    if task_names:
        ref_tasks = tasks_mod.evaluate_tasks(ref_path, paths, rows, task_names, limit=task_limit,
                                             max_drop=max_task_drop, allow_download=allow_download,
                                             common=common, timeout=timeout, say=say)
    ref = session.reference_record(known.get(str(ref_path.resolve())))
    if ref_tasks is not None:
        ref["tasks"] = ref_tasks
    out_rows = [rows[p] for p in paths]
    states = {r["verdict"] for r in out_rows}
    verdict = next((v for v in ("error", "fail", "undecided") if v in states), "pass")
    return {
        "schema": "edgesmith.eval/2",
        "created": definitions.now(),
        "environment": definitions.environment(),
        "settings": {"text": text_name, "text_sha256": hashlib.sha256(body.encode()).hexdigest(),
                     "window": session.width, "windows": len(session.ref_scored),
                     "available_windows": session.available, "scored_tokens": ref["scored_tokens"],
                     "max_tokens": None if max_windows else max_tokens, "fixed_windows": max_windows,
                     "rounds": session.rounds, "kl_top_k": top_k, "threads": threads, "backend": backend,
                     **({"tasks": task_names, "task_limit": task_limit, "allow_download": allow_download}
                        if task_names else {})},
        "definitions": definitions.EVAL,
        "gates": {**gates.to_dict(), **({"max_task_drop": max_task_drop} if task_names else {})},
        "reference": ref,
        "artifacts": out_rows,
        "verdict": verdict,
    }


def _speed(v: Any) -> dict[str, Any]:
    """A bench decode figure; a bare number is one run with no spread."""
    if isinstance(v, dict):
        return v
    return {"mean": float(v), "sd": None, "n": 1}


def _reference_settings(ref: Path, paths: list[Path], common: dict[str, Any]) -> dict[str, Any]:
    """--backend and -O are the artifacts' settings; the reference takes them only
    when the same backend runs it (a Hugging Face reference run by transformers
    would refuse a llama.cpp option)."""
    if not (common.get("backend") or common.get("options")):
        return {}
    mine = _load_backend(ref, None)
    theirs = {_load_backend(p, common.get("backend")) for p in paths}
    return {} if mine in theirs else {"backend": None, "options": {}}


def _load_backend(path: Path, backend: str | None) -> str | None:
    from .. import formats
    from ..architectures import model_type
    from ..dispatch import choose
    from ..plugins import get_manager

    try:
        art = formats.detect(path)
        return choose(get_manager(), "load", art.format, backend=backend, architecture=model_type(art)).name
    except UserError:
        return None


def _stop_reason(row: dict[str, Any], scored: int, budget: int, available: int) -> str | None:
    if row["status"] != "ok":
        return None
    if row["verdict"] != "undecided":
        return "decided"
    if not gates_mod.wants_tokens(row["gates"]):
        return "more text cannot decide it (a speed gate within its noise)"
    return "the text ended" if scored >= available else "the token budget ran out (--max-tokens)"


class _Session:
    """The workers' shared scratch folder and what each has scored so far."""

    def __init__(self, work: Path, ref_path: Path, paths: list[Path], common: dict[str, Any], top_k: int,
                 window: int, timeout: float | None, say: Progress):
        self.work, self.ref_path, self.paths, self.common = work, ref_path, paths, common
        self.top_k, self.window, self.timeout, self.say = top_k, window, timeout, say
        self.ref_scored: dict[int, dict[str, Any]] = {}
        self.scored: dict[Path, dict[int, dict[str, Any]]] = {p: {} for p in paths}
        self.answers: dict[Path, dict[str, Any]] = {}
        self.ref_meta: dict[str, Any] = {}
        self.pending = list(paths)
        self.rounds = 0
        self.width = window
        self.available = 0
        self.ref_sizes = sizes(ref_path)
        self.ref_settings = _reference_settings(ref_path, paths, common)

    def round(self, positions: list[int], paths: list[Path]) -> None:
        """Score the windows at ``positions`` of the scoring order: the reference, then ``paths``."""
        self.rounds += 1
        first = self.rounds == 1
        tag = f"round {self.rounds}"
        self.say(f"reference {self.ref_path}: {tag}: starting")
        answer = run_worker({"kind": "reference", "artifact": str(self.ref_path), "workdir": str(self.work),
                             "window": self.window, "top_k": self.top_k, "smoke": first,
                             "positions": positions, **self.common, **self.ref_settings},
                            lambda m: self.say(f"reference {self.ref_path}: {tag}: {m}"), self.timeout)
        if not answer["ok"]:
            raise MeasureError(f"the reference {self.ref_path} could not be evaluated: {answer['error']}")
        r = answer["result"]
        if first:
            self.ref_meta = r
            self.width, self.available = r["window"], r["available_windows"]
        for rec in r["scored"]:
            self.ref_scored[rec["w"]] = rec
        windows = [rec["w"] for rec in r["scored"]]
        for n, path in enumerate(list(paths)):  # a failure leaves self.pending, which paths may be
            label = f"[{n + 1}/{len(paths)}] {path}: {tag}"
            self.say(f"{label}: starting")
            answer = run_worker({"kind": "compare", "artifact": str(path), "workdir": str(self.work),
                                 "windows": windows, "tag": f"a{self.paths.index(path)}", "smoke": first,
                                 **self.common}, lambda m, label=label: self.say(f"{label}: {m}"), self.timeout)
            if not answer["ok"]:
                self.answers[path] = answer
                self.pending.remove(path)
                continue
            if first:
                self.answers[path] = answer
            for rec in answer["result"]["scored"]:
                self.scored[path][rec["w"]] = rec

    def reference_record(self, bench: dict[str, Any] | None) -> dict[str, Any]:
        import numpy as np

        recs = [self.ref_scored[w] for w in sorted(self.ref_scored)]
        n = [x["n"] for x in recs]
        ppl = unc.exp_figure([x["nll"] for x in recs], n)
        m = self.ref_meta
        return {"path": str(self.ref_path), "name": self.ref_path.name, **self.ref_sizes,
                "backend": backend_versions(m["backend"]), "window": self.width, "windows": len(recs),
                "tokens": m["tokens"], "prefix": m["prefix"], "scored_tokens": int(sum(n)),
                "vocab": int(max(x["max_vocab"] for x in recs)), "nll": float(np.log(ppl["value"])),
                "perplexity": ppl["value"], "intervals": {"perplexity": ppl},
                "ref_tail_mass": float(sum(x["tail"] for x in recs) / sum(n)),
                "smoke": m["smoke"], "bench_decode_tps": bench}


def _row(path: Path, s: _Session, gates: gates_mod.Gates, known: dict[str, dict[str, Any]]) -> dict[str, Any]:
    import numpy as np

    row: dict[str, Any] = {"path": str(path), "name": path.name, **sizes(path)}
    answer = s.answers.get(path)
    if answer is None or not answer["ok"]:
        answer = answer or {"error": "not evaluated", "kind": "internal"}
        return {**row, "status": "error", "error": answer["error"], "error_kind": answer["kind"],
                "verdict": "error", "log_tail": answer.get("log", "")[-1500:]}
    ws = sorted(s.scored[path])
    mine = [s.scored[path][w] for w in ws]
    ref = [s.ref_scored[w] for w in ws]
    n = [x["n"] for x in mine]
    kl_tokens = [np.load(s.work / f"a{s.paths.index(path)}-w{w}.npy") for w in ws]
    iv = {
        "perplexity": unc.exp_figure([x["nll"] for x in mine], n),
        "ppl_ratio": unc.exp_figure([x["nll"] - r["nll"] for x, r in zip(mine, ref, strict=True)], n),
        "kl": unc.mean_figure([x["kl"] for x in mine], n, lo=0.0),
        "kl_p99": unc.percentile_figure(kl_tokens, 99),
        "top1": unc.mean_figure([x["top1"] for x in mine], n, 0.0, 1.0),
    }
    mine_speed = known.get(str(path.resolve()))
    ref_speed = known.get(str(s.ref_path.resolve()))
    speed: dict[str, Any] = {"decode_tps": mine_speed["mean"] if mine_speed else None,
                             "speedup": None, "speed_source": None}
    if mine_speed and ref_speed:
        iv["speedup"] = unc.speed_ratio(mine_speed, ref_speed)
        speed.update(speedup=iv["speedup"]["value"], speed_source="bench")
    figures = {**{k: f["value"] for k, f in iv.items() if k != "speedup"},
               "ref_tail_mass": float(sum(r["tail"] for r in ref) / sum(n)),
               "size_ratio": row["size_bytes"] / s.ref_sizes["size_bytes"] if s.ref_sizes["size_bytes"] else None,
               **speed, "scored_tokens": int(sum(n)), "windows": len(ws),
               "vocab": int(max(x["max_vocab"] for x in mine))}
    first = answer["result"]
    checks = gates_mod.check(gates, {**figures, "smoke": first["smoke"]}, iv)
    return {**row, "status": "ok", "backend": backend_versions(first["backend"]), **figures, "intervals": iv,
            "smoke": first["smoke"], "gates": checks, "verdict": gates_mod.verdict(checks)}


def certificate(result: dict[str, Any]) -> dict[str, Any]:
    """The validation record ``--certify`` writes: what was checked, on which
    exact bytes (content hashes), with which software, and the verdict."""
    from ..util import content_hash

    def entry(row: dict[str, Any]) -> dict[str, Any]:
        path = Path(row["path"])
        return {"content_hash": content_hash(path) if path.exists() else None, **row}

    return {
        "schema": "edgesmith.certificate/1",
        "issued": definitions.now(),
        "environment": result["environment"],
        "settings": result["settings"],
        "definitions": result["definitions"],
        "gates": result["gates"],
        "reference": entry(result["reference"]),
        "artifacts": [entry(r) for r in result["artifacts"]],
        "verdict": result["verdict"],
    }


def exit_code(result: dict[str, Any]) -> int:
    if result["verdict"] == "error":
        return gates_mod.EXIT_MEASURE_FAILED
    return gates_mod.EXIT_GATE_FAILED if result["verdict"] == "fail" else 0
