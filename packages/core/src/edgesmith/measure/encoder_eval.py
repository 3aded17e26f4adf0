"""``edgesmith eval`` on encoders: how close each artifact's embeddings are to the reference's.

The sentences of the text (the shipped one by default) are embedded by the
reference and by every artifact, each in its own worker, with the same
tokenizer, cut and pooling (:mod:`edgesmith.encoders`). Per sentence the
cosine similarity of the two vectors; reported: its mean with a 95 %
interval (sentences are the sampling unit) and the worst sentence. The gate
``--min-cosine`` passes when the whole interval is at or above the limit,
fails when it is all below, and is undecided otherwise, as the other gates.

A Hugging Face checkpoint as the reference is embedded by the transformers
backend in float32 (safetensors only, no remote code), cut to the artifacts' length.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..scratch import scratch_dir
from ..util import physical_cores
from . import definitions
from .common import MeasureError, Progress, backend_versions, check_paths, sizes
from .isolation import run_worker

SCHEMA = "edgesmith.encoder-eval/1"
DEFAULT_MIN_COSINE = 0.99
#: Sentences embedded when not told (the shipped text has many more).
DEFAULT_SENTENCES = 128

DEFINITIONS = {
    "cosine": "cosine similarity of the artifact's and the reference's pooled embedding of one sentence",
    "cosine_mean": "mean over the sentences, with a 95 % interval (t, sentences as the unit)",
    "cosine_worst": "the lowest cosine of any sentence",
    "min_cosine": "gate: pass when the interval of the mean is all >= the limit, fail when all below",
}


def applies(artifacts: Sequence[str | Path], reference: str | Path) -> bool:
    """Whether the artifacts (and the reference) are encoders: then eval takes this path."""
    from .encoder_bench import applies as all_encoders

    return all_encoders([*artifacts, reference])


def evaluate(artifacts: Sequence[str | Path], reference: str | Path, *, text: str | Path | None = None,
             max_sentences: int | None = None, min_cosine: float | None = DEFAULT_MIN_COSINE,
             threads: int | None = None, backend: str | None = None, options: dict[str, str] | None = None,
             timeout: float | None = None, progress: Progress | None = None) -> dict[str, Any]:
    """Cosine similarity of each artifact's embeddings to the reference's, with the gate's verdict."""
    import numpy as np

    from .. import encoders
    from .text import load_text

    paths = check_paths(list(artifacts))
    ref_path = check_paths([reference])[0]
    body, text_name = load_text(text)
    count = max_sentences or DEFAULT_SENTENCES
    if count < 2:
        raise UserError(f"--windows (sentences) must be at least 2 for an interval, got {count}")
    chosen = encoders.sentences(body)[:count]
    if len(chosen) < 2:
        raise UserError("the text has fewer than two sentences of three words or more; give a longer --text")
    threads = threads or physical_cores()
    say = progress or (lambda message: None)
    common = {"kind": "encoder_embed", "backend": backend, "options": options or {}, "threads": threads}
    rows: dict[Path, dict[str, Any]] = {}
    with scratch_dir("encoder-eval") as work:
        (work / "sentences.json").write_text(json.dumps(chosen))
        answers = {}
        for n, path in enumerate(paths):
            label = f"[{n + 1}/{len(paths)}] {path}"
            say(f"{label}: starting")
            answers[path] = run_worker({**common, "artifact": str(path), "workdir": str(work), "tag": f"a{n}"},
                                       lambda m, label=label: say(f"{label}: {m}"), timeout)
        lengths = [a["result"]["seq_len"] for a in answers.values() if a["ok"] and a["result"]["seq_len"]]
        say(f"reference {ref_path}: starting")
        ref = run_worker({**common, "artifact": str(ref_path), "workdir": str(work), "tag": "ref",
                          "max_len": min(lengths) if lengths else None},
                         lambda m: say(f"reference {ref_path}: {m}"), timeout)
        if not ref["ok"]:
            raise MeasureError(f"the reference {ref_path} could not be evaluated: {ref['error']}")
        ref_vecs = np.load(work / "ref.npy")
        for n, path in enumerate(paths):
            mine = np.load(work / f"a{n}.npy") if answers[path]["ok"] else None
            rows[path] = _row(path, answers[path], mine, ref_vecs, min_cosine)
    out_rows = [rows[p] for p in paths]
    states = {r["verdict"] for r in out_rows}
    verdict = next((v for v in ("error", "fail", "undecided") if v in states), "pass")
    r = ref["result"]
    return {"schema": SCHEMA, "created": definitions.now(), "environment": definitions.environment(),
            "settings": {"text": text_name, "sentences": len(chosen), "threads": threads, "backend": backend},
            "definitions": DEFINITIONS, "gates": {"min_cosine": min_cosine},
            "reference": {"path": str(ref_path), "name": ref_path.name, **sizes(ref_path),
                          "backend": backend_versions(r["backend"]),
                          "seq_len": r["seq_len"], "dimensions": r["dimensions"], "pooling": r["pooling"],
                          "truncated_sentences": r["truncated"]},
            "artifacts": out_rows, "verdict": verdict}


def decide(figure: dict[str, Any], limit: float) -> str:
    """pass, fail or undecided of a "at least ``limit``" gate on an interval."""
    lo, hi = figure.get("lo"), figure.get("hi")
    if lo is None or hi is None:
        return "undecided"
    return "pass" if lo >= limit else "fail" if hi < limit else "undecided"


def _row(path: Path, answer: dict[str, Any], mine: Any, ref: Any, limit: float | None) -> dict[str, Any]:
    import numpy as np

    from ..encoders import cosine
    from .uncertainty import mean_figure

    row: dict[str, Any] = {"path": str(path), "name": path.name, **sizes(path)}
    if not answer["ok"]:
        return {**row, "status": "error", "error": answer["error"], "error_kind": answer["kind"],
                "verdict": "error", "log_tail": answer.get("log", "")[-1500:]}
    r = answer["result"]
    if mine.shape != ref.shape:
        return {**row, "status": "error", "verdict": "error", "error_kind": "user", "log_tail": "",
                "error": f"its embeddings are {mine.shape[1]}-dimensional, the reference's {ref.shape[1]}; "
                         f"compare artifacts made from the same model"}
    cos = [cosine(a, b) for a, b in zip(mine, ref, strict=True)]
    fig = mean_figure(cos, [1.0] * len(cos), -1.0, 1.0)
    worst = int(np.argmin(cos))
    gates = []
    if limit is not None:
        state = decide(fig, limit)
        span = f" (95 % interval {fig['lo']:.5g}–{fig['hi']:.5g})" if fig.get("lo") is not None else ""
        detail = {"pass": f"cosine_mean {fig['value']:.5g} >= {limit:g}{span}",
                  "fail": f"cosine_mean {fig['value']:.5g} is under the limit {limit:g} (--min-cosine){span}",
                  "undecided": f"cosine_mean {fig['value']:.5g}: cannot tell from {limit:g} yet{span}"}[state]
        gates.append({"gate": "min_cosine", "option": "--min-cosine", "figure": "cosine_mean", "limit": limit,
                      "value": fig["value"], "state": state, "passed": {"pass": True, "fail": False}.get(state),
                      "interval": fig, "detail": detail})
    states = {g["state"] for g in gates}
    verdict = "fail" if "fail" in states else "undecided" if "undecided" in states else "pass"
    return {**row, "status": "ok", "backend": backend_versions(r["backend"]), "seq_len": r["seq_len"],
            "dimensions": r["dimensions"], "pooling": r["pooling"], "sentences": len(cos),
            "truncated_sentences": r["truncated"], "cosine_mean": fig["value"], "cosine_worst": cos[worst],
            "worst_sentence": worst, "intervals": {"cosine_mean": fig}, "gates": gates, "verdict": verdict}


def job(job: dict[str, Any]) -> dict[str, Any]:
    """The worker's side: embed every sentence of the plan; vectors to ``{tag}.npy``."""
    import numpy as np

    from .. import api
    from ..formats import detect
    from ..types import RunRequest
    from ..worker import progress

    work = Path(job["workdir"])
    chosen = json.loads((work / "sentences.json").read_text())
    # A Hugging Face reference goes to the transformers backend (float32), cut to the
    # artifacts' length; every other artifact runs with the user's backend and options.
    if detect(job["artifact"]).format == "hf":
        backend, options = "transformers", ({"max_length": job["max_len"]} if job.get("max_len") else {})
    else:
        backend, options = job.get("backend"), job.get("options") or {}
    progress("loading")
    runner = api.load(job["artifact"], backend=backend, options=options, threads=job.get("threads"))
    facts = []
    with runner:
        for n, s in enumerate(chosen):
            progress(f"sentence {n + 1}/{len(chosen)}", n, len(chosen))
            extra = dict(runner.generate(RunRequest(prompt=s)).extra)
            if "embedding" not in extra:
                raise UserError(f"{job['artifact']} did not run as an encoder (no embedding came back)")
            facts.append(extra)
        backend = runner.backend
    np.save(work / f"{job['tag']}.npy", np.asarray([f["embedding"] for f in facts], dtype=np.float32))
    first = facts[0]
    return {"backend": backend, "seq_len": first.get("seq_len"), "dimensions": len(first["embedding"]),
            "pooling": first.get("pooling"), "truncated": sum(1 for f in facts if f.get("truncated_tokens"))}


def table(doc: dict[str, Any]) -> None:
    """The human form of an encoder eval."""
    import click

    ref = doc["reference"]
    click.echo(f"reference: {ref['name']} ({ref['format']}, {ref['dimensions']} dimensions, "
               f"{ref['pooling']} pooling); {doc['settings']['sentences']} sentences")
    click.echo(f"{'artifact':<28} {'format':<9} {'cosine mean [95 % interval]':>30} {'worst':>8} {'verdict':>10}")
    for r in doc["artifacts"]:
        if r["status"] != "ok":
            click.echo(f"{r['name']:<28} {r.get('format') or '?':<9} error: {r['error']}")
            continue
        iv = r["intervals"]["cosine_mean"]
        span = f"[{iv['lo']:.5f}, {iv['hi']:.5f}]" if iv.get("lo") is not None else "[n/a]"
        click.echo(f"{r['name']:<28} {r['format']:<9} {r['cosine_mean']:>10.5f} {span:>19} "
                   f"{r['cosine_worst']:>8.5f} {r['verdict']:>10}")
        for g in r["gates"]:
            click.echo(f"  {g['gate']}: {g['state']}: {g['detail']}")
