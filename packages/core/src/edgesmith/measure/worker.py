"""The per-artifact measuring jobs, run in a worker process (:mod:`edgesmith.worker`).

Each loads one artifact, measures it and exits, so its peak memory is the
artifact's own and a crash (even a segfault in a vendor library) ends only
that process. :func:`handle` is the worker's entry point.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

# VmHWM: this process's own peak memory, which starts afresh at exec.
from ..runner import peak_rss_mb
from ..worker import progress


def _load(job: dict[str, Any]) -> Any:
    from .. import api

    progress("loading")
    return api.load(job["artifact"], backend=job.get("backend"), options=job.get("options") or {},
                    threads=job.get("threads"))


def bench(job: dict[str, Any]) -> dict[str, Any]:
    from ..types import RunRequest
    from .text import exact_prompt, load_text

    before = peak_rss_mb()
    runner = _load(job)
    with runner:
        text, _ = load_text(job.get("text"))
        prompt, n_prompt = exact_prompt(runner.tokenize, runner.detokenize, text, job["prompt_tokens"])
        request = RunRequest(prompt=prompt, max_tokens=job["gen_tokens"])
        runs = []
        total = job["warmup"] + job["repeat"]
        for i in range(total):
            warm = i < job["warmup"]
            progress(f"warm-up {i + 1}/{job['warmup']}" if warm
                     else f"repeat {i - job['warmup'] + 1}/{job['repeat']}")
            r = runner.generate(request)
            if warm:
                continue
            t = r.timings
            runs.append({"ttft_s": t.ttft_s, "prefill_tps": t.prefill_tps, "decode_tps": t.decode_tps,
                         "total_s": t.total_s, "prompt_tokens": r.prompt_tokens,
                         "generated_tokens": r.generated_tokens, "finish_reason": r.finish_reason})
        return {"backend": runner.backend, "load_s": runner.load_s,
                "rss_before_load_mb": before,
                "peak_rss_mb": peak_rss_mb(), "prompt_tokens": n_prompt,
                "context_length": runner.context_length, "runs": runs}


def reference(job: dict[str, Any]) -> dict[str, Any]:
    """Score the text with the reference and keep, per window, what the others
    are compared with (its top-k next-token distribution) in ``workdir``."""
    import numpy as np

    from ..errors import UserError
    from .scoring import reference_window
    from .text import load_text, special_prefix, windows

    work = Path(job["workdir"])
    runner = _load(job)
    with runner:
        text, _ = load_text(job.get("text"))
        progress("tokenizing")
        ids = runner.tokenize(text, add_special=False)
        prefix = special_prefix(runner.tokenize)
        width = job["window"]
        if runner.context_length:
            width = min(width, runner.context_length - len(prefix))
        spans = windows(len(ids), width, job.get("max_windows"))
        if not spans:
            raise UserError("the evaluation text is shorter than two tokens; give a longer --text")
        np.save(work / "ids.npy", np.asarray(ids, dtype=np.int64))
        (work / "plan.json").write_text(json.dumps({"prefix": prefix, "spans": spans, "width": width}))
        sums = _Sums()
        for n, (a, b) in enumerate(spans):
            progress(f"window {n + 1}/{len(spans)}")
            lp = np.asarray(runner.logprobs(prefix + ids[a:b]), dtype=np.float32)
            stats = reference_window(lp, len(prefix), ids[a:b], job["top_k"], work / f"w{n}.npz")
            sums.add(stats)
        result = {"backend": runner.backend, "windows": len(spans), "window": width,
                  "prefix": prefix, "tokens": len(ids), **sums.figures()}
        result.update(_generate_checks(runner, job))
        return result


def compare(job: dict[str, Any]) -> dict[str, Any]:
    """Score the same windows with an artifact against the reference's distributions."""
    import numpy as np

    from ..errors import UserError
    from .scoring import compare_window
    from .text import load_text, special_prefix

    work = Path(job["workdir"])
    plan = json.loads((work / "plan.json").read_text())
    ref_ids = np.load(work / "ids.npy").tolist()
    runner = _load(job)
    with runner:
        text, _ = load_text(job.get("text"))
        progress("checking the tokenizer")
        ids = runner.tokenize(text, add_special=False)
        if ids != ref_ids:
            at = next((i for i, (x, y) in enumerate(zip(ids, ref_ids, strict=False)) if x != y), min(len(ids), len(ref_ids)))
            raise UserError(
                f"its tokenizer disagrees with the reference's at token {at} of the text "
                f"({len(ids)} vs {len(ref_ids)} tokens); compare artifacts made from the same model")
        if special_prefix(runner.tokenize) != plan["prefix"]:
            raise UserError("its tokenizer adds different special tokens than the reference's; "
                            "compare artifacts made from the same model")
        prefix = plan["prefix"]
        sums = _Sums()
        for n, (a, b) in enumerate(plan["spans"]):
            progress(f"window {n + 1}/{len(plan['spans'])}")
            lp = np.asarray(runner.logprobs(prefix + ids[a:b]), dtype=np.float32)
            sums.add(compare_window(lp, len(prefix), ids[a:b], work / f"w{n}.npz"))
        result = {"backend": runner.backend, **sums.figures()}
        result.update(_generate_checks(runner, job))
        return result


class _Sums:
    """Adds per-window sums so only one window's arrays are held at a time."""

    def __init__(self) -> None:
        self.s: dict[str, float] = {}

    def add(self, stats: dict[str, float]) -> None:
        for k, v in stats.items():
            if k.startswith("max_"):
                self.s[k] = max(self.s.get(k, 0.0), float(v))
            else:
                self.s[k] = self.s.get(k, 0.0) + float(v)

    def figures(self) -> dict[str, Any]:
        import math

        s, n = self.s, self.s.get("n", 0.0)
        out: dict[str, Any] = {"scored_tokens": int(n), "vocab": int(s.get("max_vocab", 0))}
        out["nll"] = s["nll"] / n
        out["perplexity"] = math.exp(out["nll"])
        if "kl" in s:
            out["kl"] = s["kl"] / n
            out["top1"] = s["top1"] / n
        if "tail" in s:
            out["ref_tail_mass"] = s["tail"] / n
        return out


def _generate_checks(runner: Any, job: dict[str, Any]) -> dict[str, Any]:
    """The smoke test; its greedy generations also give a rough decode speed."""
    import statistics

    from ..types import RunRequest
    from . import smoke

    samples = []
    speeds = []
    tokens = job.get("smoke_tokens", smoke.TOKENS)
    for n, prompt in enumerate(smoke.PROMPTS):
        progress(f"smoke test {n + 1}/{len(smoke.PROMPTS)}")
        r = runner.generate(RunRequest(prompt=prompt, max_tokens=tokens))
        samples.append({"prompt": prompt, "text": r.text, "tokens": r.generated_tokens,
                        "problem": smoke.check(r.text, r.token_ids)})
        # The first generation also warms the runner up; time the others.
        if n and r.timings.decode_tps:
            speeds.append(r.timings.decode_tps)
    return {"smoke": smoke.summarize(samples),
            "decode_tps": statistics.median(speeds) if speeds else None}


JOBS = {"bench": bench, "reference": reference, "compare": compare}


def handle(job: dict[str, Any]) -> dict[str, Any]:
    """The worker's entry point: run the job of ``job["kind"]``."""
    t0 = time.perf_counter()
    result = JOBS[job["kind"]](job)
    result["worker_seconds"] = time.perf_counter() - t0
    return result
