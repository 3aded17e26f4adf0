"""``edgesmith bench`` on encoders: latency of one inference at the graph's fixed shape.

An encoder generates nothing, so prefill/decode speeds do not apply. Each
artifact's worker embeds one text (cut to the graph's tokens, so the shape
is the full fixed one) ``warmup`` times untimed, then ``inferences`` times
timed; the time is the graph run alone, measured inside the backend's
process (tokenizing and pooling excluded). Reported: p50, p90, mean ± sd
and n of those times, and the process's peak memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..util import physical_cores
from . import definitions
from .common import Progress, backend_versions, check_paths, sizes
from .isolation import run_worker

SCHEMA = "edgesmith.encoder-bench/1"
#: Fewest timed inferences: percentiles need more than bench's 3 generation repeats.
MIN_INFERENCES = 30
#: Characters of the text embedded per inference (more than any fixed shape holds).
TEXT_CHARS = 4000

DEFINITIONS = {
    "latency_ms": "milliseconds of one graph run on a batch of 1 at the graph's fixed sequence length "
                  "(the text is cut to fill it), timed in the backend's process; tokenizing and pooling "
                  "are not included",
    "p50/p90": "median and 90th percentile of the timed inferences",
    "peak_rss_mb": "peak resident memory of the process that ran the artifact (VmHWM), MiB",
}


def applies(artifacts: Sequence[str | Path]) -> bool:
    """Whether every artifact is an encoder (then bench takes this path)."""
    from ..encoders import is_encoder
    from ..errors import UserError

    found = [Path(a).exists() and is_encoder(a) for a in artifacts]
    if any(found) and not all(found):
        enc = next(str(a) for a, e in zip(artifacts, found, strict=True) if e)
        raise UserError(f"{enc} is an encoder and other artifacts are not; measure encoders and text "
                        f"generators in separate runs")
    return bool(found) and all(found)


def bench(artifacts: Sequence[str | Path], *, repeat: int = MIN_INFERENCES, warmup: int = 1,
          threads: int | None = None, backend: str | None = None, options: dict[str, str] | None = None,
          text: str | Path | None = None, timeout: float | None = None,
          progress: Progress | None = None) -> dict[str, Any]:
    """Latency and memory of every encoder artifact; one record each, failures included."""
    from .text import load_text

    paths = check_paths(list(artifacts))
    _, text_name = load_text(text)
    threads = threads or physical_cores()
    n = max(int(repeat), MIN_INFERENCES)
    say = progress or (lambda message: None)
    rows = []
    for i, path in enumerate(paths):
        label = f"[{i + 1}/{len(paths)}] {path}"
        say(f"{label}: starting")
        job = {"kind": "encoder_bench", "artifact": str(path), "backend": backend, "options": options or {},
               "threads": threads, "inferences": n, "warmup": warmup, "text": str(text) if text else None}
        answer = run_worker(job, lambda m, label=label: say(f"{label}: {m}"), timeout)
        rows.append(_row(path, answer))
    return {"schema": SCHEMA, "created": definitions.now(), "environment": definitions.environment(),
            "settings": {"inferences": n, "warmup": warmup, "threads": threads, "backend": backend,
                         "text": text_name},
            "definitions": DEFINITIONS, "artifacts": rows}


def _row(path: Path, answer: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    from .uncertainty import speed_figure

    row: dict[str, Any] = {"path": str(path), "name": path.name, **sizes(path)}
    if not answer["ok"]:
        return {**row, "status": "error", "error": answer["error"], "error_kind": answer["kind"],
                "log_tail": answer.get("log", "")[-1500:]}
    r = answer["result"]
    ms = [s * 1000 for s in r["infer_s"]]
    fig = speed_figure(ms)
    return {**row, "status": "ok", "backend": backend_versions(r["backend"]), "load_s": r["load_s"],
            "latency_ms": {"p50": float(np.percentile(ms, 50)), "p90": float(np.percentile(ms, 90)),
                           "mean": fig["mean"], "sd": fig["sd"], "n": fig["n"], "lo": fig["lo"],
                           "hi": fig["hi"], "min": min(ms), "max": max(ms)},
            "seq_len": r["seq_len"], "tokens": r["tokens"], "dimensions": r["dimensions"],
            "pooling": r["pooling"], "peak_rss_mb": r["peak_rss_mb"]}


def job(job: dict[str, Any]) -> dict[str, Any]:
    """The worker's side: load the artifact, embed the text ``warmup`` + ``inferences`` times."""
    from .. import api
    from ..runner import peak_rss_mb
    from ..types import RunRequest
    from ..worker import progress
    from .text import load_text

    progress("loading")
    runner = api.load(job["artifact"], backend=job.get("backend"), options=job.get("options") or {},
                      threads=job.get("threads"))
    with runner:
        body, _ = load_text(job.get("text"))
        request = RunRequest(prompt=" ".join(body.split())[:TEXT_CHARS])
        times, peak, extra = [], 0.0, {}
        total = job["warmup"] + job["inferences"]
        for i in range(total):
            progress(f"inference {i + 1}/{total}" + (" (warm-up)" if i < job["warmup"] else ""), i, total)
            result = runner.generate(request)
            extra = dict(result.extra)
            if "infer_s" not in extra:
                from ..errors import UserError

                raise UserError(f"{job['artifact']} did not run as an encoder (its backend gave no "
                                f"embedding); bench it without the encoder path")
            peak = max(peak, result.timings.peak_rss_mb or 0.0)
            if i >= job["warmup"]:
                times.append(extra["infer_s"])
        return {"backend": runner.backend, "load_s": runner.load_s, "infer_s": times,
                "peak_rss_mb": max(peak, peak_rss_mb()), "seq_len": extra.get("seq_len") or extra.get("tokens"),
                "tokens": extra.get("tokens"), "dimensions": extra.get("dimensions"),
                "pooling": extra.get("pooling")}


def table(doc: dict[str, Any]) -> None:
    """The human form of an encoder bench."""
    import click

    click.echo(f"{'artifact':<28} {'format':<9} {'backend':<9} {'tokens':>6} {'p50 ms':>8} {'p90 ms':>8} "
               f"{'mean ± sd ms':>16} {'n':>4} {'peak MiB':>9}")
    for r in doc["artifacts"]:
        if r["status"] != "ok":
            click.echo(f"{r['name']:<28} {r.get('format') or '?':<9} error: {r['error']}")
            continue
        lat = r["latency_ms"]
        sd = f"{lat['sd']:.3f}" if lat["sd"] is not None else "n/a"
        click.echo(f"{r['name']:<28} {r['format']:<9} {r['backend'].get('name', '?'):<9} {r['seq_len']:>6} "
                   f"{lat['p50']:>8.3f} {lat['p90']:>8.3f} {lat['mean']:>9.3f} ± {sd:<5} {lat['n']:>4} "
                   f"{r['peak_rss_mb']:>9.0f}")
