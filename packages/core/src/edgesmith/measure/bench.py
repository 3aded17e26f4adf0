"""``edgesmith bench``: speed and memory of each artifact, one worker process each."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import UserError
from ..util import physical_cores
from . import definitions
from .common import Progress, backend_versions, check_paths, sizes, stats
from .isolation import run_worker


def bench(
    artifacts: list[str | Path],
    *,
    prompt_tokens: int = 128,
    gen_tokens: int = 64,
    repeat: int = 3,
    warmup: int = 1,
    threads: int | None = None,
    backend: str | None = None,
    options: dict[str, str] | None = None,
    text: str | Path | None = None,
    bandwidth_bytes: int | None = None,
    bandwidth_result: dict[str, Any] | None = None,
    timeout: float | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Benchmark every artifact; one record per artifact, failures included."""
    from . import bandwidth
    from .text import load_text

    if prompt_tokens < 1 or gen_tokens < 2:
        raise UserError("--prompt-tokens must be at least 1 and --gen-tokens at least 2 "
                        "(decode speed needs two tokens)")
    if repeat < 1 or warmup < 0:
        raise UserError("--repeat must be at least 1 (and --warmup not negative)")
    paths = check_paths(artifacts)
    _, text_name = load_text(text)  # a bad --text fails before any work
    threads = threads or physical_cores()
    say = progress or (lambda message: None)
    bw = bandwidth_result  # measured once by a caller that benches artifacts one by one
    if bw is None:
        say("measuring memory bandwidth")
        bw = bandwidth.measure(threads, **({"nbytes": bandwidth_bytes} if bandwidth_bytes else {}))
    rows = []
    for n, path in enumerate(paths):
        label = f"[{n + 1}/{len(paths)}] {path}"
        say(f"{label}: starting")
        job = {"kind": "bench", "artifact": str(path), "backend": backend, "options": options or {},
               "threads": threads, "prompt_tokens": prompt_tokens, "gen_tokens": gen_tokens,
               "repeat": repeat, "warmup": warmup, "text": str(text) if text else None}
        answer = run_worker(job, lambda m, label=label: say(f"{label}: {m}"), timeout)
        rows.append(_row(path, answer, bw["gb_per_s"], gen_tokens))
    return {
        "schema": "edgesmith.bench/1",
        "created": definitions.now(),
        "environment": definitions.environment(),
        "settings": {"prompt_tokens": prompt_tokens, "gen_tokens": gen_tokens, "repeat": repeat,
                     "warmup": warmup, "threads": threads, "backend": backend, "text": text_name},
        "definitions": definitions.BENCH,
        "bandwidth": bw,
        "artifacts": rows,
    }


def _row(path: Path, answer: dict[str, Any], gb_per_s: float, gen_tokens: int) -> dict[str, Any]:
    row: dict[str, Any] = {"path": str(path), "name": path.name, **sizes(path)}
    if not answer["ok"]:
        return {**row, "status": "error", "error": answer["error"], "error_kind": answer["kind"],
                "log_tail": answer.get("log", "")[-1500:]}
    r = answer["result"]
    runs = r["runs"]
    decode = stats([x["decode_tps"] for x in runs])
    eos_early = any(x["generated_tokens"] < gen_tokens for x in runs)
    fraction = None
    if decode["median"] and gb_per_s:
        fraction = decode["median"] * row["weights_bytes"] / (gb_per_s * 1e9)
    return {
        **row,
        "status": "ok",
        "backend": backend_versions(r["backend"]),
        "load_s": r["load_s"],
        "prompt_tokens": r["prompt_tokens"],
        "generated_tokens": [x["generated_tokens"] for x in runs],
        "eos_early": eos_early,
        "ttft_s": stats([x["ttft_s"] for x in runs]),
        "prefill_tps": stats([x["prefill_tps"] for x in runs]),
        "decode_tps": decode,
        "total_s": stats([x["total_s"] for x in runs]),
        "peak_rss_mb": r["peak_rss_mb"],
        "rss_before_load_mb": r["rss_before_load_mb"],
        "roofline_fraction": fraction,
        "runs": runs,
    }
