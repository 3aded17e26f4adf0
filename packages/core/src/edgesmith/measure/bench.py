"""``edgesmith bench``: speed and memory of each artifact, one worker process each.

A bench is a list of tests (shapes), each timed ``repeat`` times after the
warm-up in the same worker: by default one test per ``--prompt-tokens`` length
(prefill at that length, then decode from there); ``--depth D`` adds decode
tests with D tokens already in the KV cache; ``--llama-bench`` measures
llama-bench's pp512 and tg128 (5 repeats, mean ± sd), so the figures line up
with upstream's.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..util import physical_cores
from . import definitions
from .common import Progress, backend_versions, check_paths, sizes
from .isolation import run_worker
from .uncertainty import speed_figure

#: llama-bench's defaults: -p 512 -n 128 -r 5.
LLAMA_BENCH = {"prompt_tokens": (512,), "gen_tokens": 128, "repeat": 5}


def tests(prompt_tokens: Sequence[int], gen_tokens: int, depths: Sequence[int] = (),
          llama_bench: bool = False) -> list[dict[str, Any]]:
    """The shapes to time: ``{"name", "prompt_tokens", "gen_tokens", "depth"}`` each."""
    out = []
    if llama_bench:
        out += [{"name": f"pp{p}", "prompt_tokens": p, "gen_tokens": 1, "depth": 0} for p in prompt_tokens]
        # tg from an empty cache: the smallest prompt a tokenizer makes (BOS + one token)
        out += [{"name": f"tg{gen_tokens}", "prompt_tokens": 1, "gen_tokens": gen_tokens + 1, "depth": 0}]
    else:
        out += [{"name": f"pp{p}+tg{gen_tokens}", "prompt_tokens": p, "gen_tokens": gen_tokens, "depth": p}
                for p in prompt_tokens]
    out += [{"name": f"tg{gen_tokens}@d{d}", "prompt_tokens": max(1, d), "gen_tokens": gen_tokens + llama_bench,
             "depth": d} for d in depths]
    return out


def bench(
    artifacts: list[str | Path],
    *,
    prompt_tokens: int | Sequence[int] = 128,
    gen_tokens: int = 64,
    depths: Sequence[int] = (),
    llama_bench: bool = False,
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
    from . import bandwidth, encoder_bench
    from .text import load_text

    if encoder_bench.applies(artifacts):  # encoders: latency at their fixed shape (encoder_bench)
        return encoder_bench.bench(artifacts, repeat=repeat, warmup=warmup, threads=threads, backend=backend,
                                   options=options, text=text, timeout=timeout, progress=progress)
    prompts = (prompt_tokens,) if isinstance(prompt_tokens, int) else tuple(prompt_tokens)
    if not prompts or min(prompts) < 1 or gen_tokens < 2:
        raise UserError("--prompt-tokens must be at least 1 and --gen-tokens at least 2 "
                        "(decode speed needs two tokens)")
    if any(d < 0 for d in depths):
        raise UserError("--depth must not be negative")
    if repeat < 1 or warmup < 0:
        raise UserError("--repeat must be at least 1 (and --warmup not negative)")
    paths = check_paths(artifacts)
    _, text_name = load_text(text)  # a bad --text fails before any work
    threads = threads or physical_cores()
    say = progress or (lambda message: None)
    shapes = tests(prompts, gen_tokens, depths, llama_bench)
    bw = bandwidth_result  # measured once by a caller that benches artifacts one by one
    if bw is None:
        say("measuring memory bandwidth")
        bw = bandwidth.measure(threads, **({"nbytes": bandwidth_bytes} if bandwidth_bytes else {}))
    rows = []
    for n, path in enumerate(paths):
        label = f"[{n + 1}/{len(paths)}] {path}"
        say(f"{label}: starting")
        job = {"kind": "bench", "artifact": str(path), "backend": backend, "options": options or {},
               "threads": threads, "tests": shapes, "repeat": repeat, "warmup": warmup,
               "text": str(text) if text else None}
        answer = run_worker(job, lambda m, label=label: say(f"{label}: {m}"), timeout)
        rows.append(_row(path, answer, bw["gb_per_s"]))
    return {
        "schema": "edgesmith.bench/2",
        "created": definitions.now(),
        "environment": definitions.environment(),
        "settings": {"prompt_tokens": list(prompts), "gen_tokens": gen_tokens, "depths": list(depths),
                     "llama_bench": llama_bench, "tests": [t["name"] for t in shapes], "repeat": repeat,
                     "warmup": warmup, "threads": threads, "backend": backend, "text": text_name},
        "definitions": definitions.BENCH,
        "bandwidth": bw,
        "artifacts": rows,
    }


def _decode_bytes(path: Path, depth: int) -> dict[str, Any]:
    """Bytes one decoded token reads at ``depth`` (weights once, one embedding row,
    the KV cache); the weight files' size when the format's tensors cannot be listed."""
    from . import decodebytes

    counted = decodebytes.per_token(path, depth)
    if counted.get("bytes") is None:
        counted["bytes"] = sizes(path)["weights_bytes"]
        counted["method"] = f"weight files' size ({counted.get('reason') or 'tensors not listed'})"
    return counted


def _test(path: Path, t: dict[str, Any], gb_per_s: float) -> dict[str, Any]:
    if t.get("skipped"):
        return t
    runs = t["runs"]
    decode = speed_figure([x["decode_tps"] for x in runs])
    out = {k: t[k] for k in ("name", "prompt_tokens", "gen_tokens", "depth")}
    out.update(
        generated_tokens=[x["generated_tokens"] for x in runs],
        eos_early=any(x["generated_tokens"] < t["gen_tokens"] for x in runs),
        ttft_s=speed_figure([x["ttft_s"] for x in runs]),
        prefill_tps=speed_figure([x["prefill_tps"] for x in runs]),
        decode_tps=decode,
        total_s=speed_figure([x["total_s"] for x in runs]),
        roofline_fraction=None, decode_bytes=None, runs=runs)
    if decode["mean"] and t["gen_tokens"] > 1:
        # the cache grows during decode: count it at the middle of the generated tokens
        counted = _decode_bytes(path, t["prompt_tokens"] + t["gen_tokens"] // 2)
        out["decode_bytes"] = counted
        if gb_per_s:
            out["roofline_fraction"] = decode["mean"] * counted["bytes"] / (gb_per_s * 1e9)
    return out


def _row(path: Path, answer: dict[str, Any], gb_per_s: float) -> dict[str, Any]:
    row: dict[str, Any] = {"path": str(path), "name": path.name, **sizes(path)}
    if not answer["ok"]:
        return {**row, "status": "error", "error": answer["error"], "error_kind": answer["kind"],
                "log_tail": answer.get("log", "")[-1500:]}
    r = answer["result"]
    done = [_test(path, t, gb_per_s) for t in r["tests"]]
    timed = [t for t in done if not t.get("skipped")]
    if not timed:
        return {**row, "status": "error", "error_kind": "user", "log_tail": "",
                "error": "; ".join(t["skipped"] for t in done)}
    # The row's headline figures: prefill from the first test with a real prompt,
    # decode from the first test that generates.
    pre = next((t for t in timed if t["prompt_tokens"] > 1), timed[0])
    dec = next((t for t in timed if t["gen_tokens"] > 1), None)
    empty = speed_figure([])
    return {
        **row,
        "status": "ok",
        "backend": backend_versions(r["backend"]),
        "load_s": r["load_s"],
        "prompt_tokens": pre["prompt_tokens"],
        "ttft_s": pre["ttft_s"],
        "prefill_tps": pre["prefill_tps"],
        "decode_test": dec["name"] if dec else None,
        "generated_tokens": dec["generated_tokens"] if dec else [],
        "eos_early": bool(dec and dec["eos_early"]),
        "decode_tps": dec["decode_tps"] if dec else empty,
        "total_s": (dec or pre)["total_s"],
        "roofline_fraction": dec["roofline_fraction"] if dec else None,
        "decode_bytes": dec["decode_bytes"] if dec else None,
        "peak_rss_mb": r["peak_rss_mb"],
        "rss_before_load_mb": r["rss_before_load_mb"],
        "context_length": r.get("context_length"),
        "tests": done,
    }
