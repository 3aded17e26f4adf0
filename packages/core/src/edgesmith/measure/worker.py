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
    """Time every test (shape) of ``job["tests"]``: warm-up runs, then ``repeat`` timed ones."""
    from ..types import RunRequest
    from .text import exact_prompt, load_text

    before = peak_rss_mb()
    runner = _load(job)
    with runner:
        text, _ = load_text(job.get("text"))
        done = []
        for t in job["tests"]:
            ctx = runner.context_length
            if ctx and t["prompt_tokens"] + t["gen_tokens"] > ctx:
                done.append({**t, "skipped": f"{t['name']}: {t['prompt_tokens']} + {t['gen_tokens']} tokens "
                                             f"do not fit the context of {ctx}"})
                continue
            prompt, n_prompt = exact_prompt(runner.tokenize, runner.detokenize, text, t["prompt_tokens"])
            request = RunRequest(prompt=prompt, max_tokens=t["gen_tokens"])
            runs = []
            total = job["warmup"] + job["repeat"]
            for i in range(total):
                warm = i < job["warmup"]
                progress(f"{t['name']}: " + (f"warm-up {i + 1}/{job['warmup']}" if warm
                                             else f"repeat {i - job['warmup'] + 1}/{job['repeat']}"), i, total)
                r = runner.generate(request)
                if warm:
                    continue
                tm = r.timings
                runs.append({"ttft_s": tm.ttft_s, "prefill_tps": tm.prefill_tps, "decode_tps": tm.decode_tps,
                             "total_s": tm.total_s, "prompt_tokens": r.prompt_tokens,
                             "generated_tokens": r.generated_tokens, "finish_reason": r.finish_reason})
            done.append({**t, "prompt_tokens": n_prompt, "runs": runs})
        return {"backend": runner.backend, "load_s": runner.load_s,
                "rss_before_load_mb": before,
                "peak_rss_mb": peak_rss_mb(), "context_length": runner.context_length, "tests": done}


def reference(job: dict[str, Any]) -> dict[str, Any]:
    """Score windows of the text with the reference and keep, per window, what the
    others are compared with (its top-k next-token distribution) in ``workdir``.

    The first call tokenizes the text and writes the plan (token ids, windows);
    every call scores the windows at ``job["positions"]`` of the scoring order,
    so the evaluation can ask for more round by round."""
    import numpy as np

    from ..errors import UserError
    from .scoring import reference_window
    from .text import load_text, scoring_order, special_prefix, windows

    work = Path(job["workdir"])
    runner = _load(job)
    with runner:
        if not (work / "plan.json").exists():
            text, _ = load_text(job.get("text"))
            progress("tokenizing")
            ids = runner.tokenize(text, add_special=False)
            prefix = special_prefix(runner.tokenize)
            width = job["window"]
            if runner.context_length:
                width = min(width, runner.context_length - len(prefix))
            spans = windows(len(ids), width)
            if not spans:
                raise UserError("the evaluation text is shorter than two tokens; give a longer --text")
            np.save(work / "ids.npy", np.asarray(ids, dtype=np.int64))
            (work / "plan.json").write_text(json.dumps({"prefix": prefix, "spans": spans, "width": width,
                                                        "tokens": len(ids)}))
        plan = json.loads((work / "plan.json").read_text())
        ids = np.load(work / "ids.npy").tolist()
        prefix, spans = plan["prefix"], plan["spans"]
        order = scoring_order(len(spans))
        chosen = [order[p] for p in job["positions"] if p < len(order)]
        scored = []
        for n, w in enumerate(chosen):
            progress(f"window {n + 1}/{len(chosen)}", n, len(chosen))
            a, b = spans[w]
            lp = np.asarray(runner.logprobs(prefix + ids[a:b]), dtype=np.float32)
            scored.append({"w": w, **reference_window(lp, len(prefix), ids[a:b], job["top_k"],
                                                      work / f"w{w}.npz")})
        result = {"backend": runner.backend, "window": plan["width"], "available_windows": len(spans),
                  "prefix": prefix, "tokens": plan["tokens"], "scored": scored}
        if job.get("smoke", True):
            result.update(_generate_checks(runner, job))
        return result


def compare(job: dict[str, Any]) -> dict[str, Any]:
    """Score windows ``job["windows"]`` with an artifact against the reference's
    distributions; per-token KL values go to ``job["tag"]``-w*.npy in the workdir."""
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
            at = next((i for i, (x, y) in enumerate(zip(ids, ref_ids, strict=False)) if x != y),
                      min(len(ids), len(ref_ids)))
            raise UserError(
                f"its tokenizer disagrees with the reference's at token {at} of the text "
                f"({len(ids)} vs {len(ref_ids)} tokens); compare artifacts made from the same model")
        if special_prefix(runner.tokenize) != plan["prefix"]:
            raise UserError("its tokenizer adds different special tokens than the reference's; "
                            "compare artifacts made from the same model")
        prefix = plan["prefix"]
        scored = []
        for n, w in enumerate(job["windows"]):
            progress(f"window {n + 1}/{len(job['windows'])}", n, len(job["windows"]))
            a, b = plan["spans"][w]
            lp = np.asarray(runner.logprobs(prefix + ids[a:b]), dtype=np.float32)
            scored.append({"w": w, **compare_window(lp, len(prefix), ids[a:b], work / f"w{w}.npz",
                                                    work / f"{job['tag']}-w{w}.npy")})
        result: dict[str, Any] = {"backend": runner.backend, "scored": scored}
        if job.get("smoke", True):
            result.update(_generate_checks(runner, job))
        return result


def _generate_checks(runner: Any, job: dict[str, Any]) -> dict[str, Any]:
    """The smoke test. Its timings are not kept: a few tokens from a cold start
    say nothing reliable about speed, which comes from bench."""
    from ..types import RunRequest
    from . import smoke

    samples = []
    tokens = job.get("smoke_tokens", smoke.TOKENS)
    for n, prompt in enumerate(smoke.PROMPTS):
        progress(f"smoke test {n + 1}/{len(smoke.PROMPTS)}")
        r = runner.generate(RunRequest(prompt=prompt, max_tokens=tokens))
        samples.append({"prompt": prompt, "text": r.text, "tokens": r.generated_tokens,
                        "problem": smoke.check(r.text, r.token_ids)})
    return {"smoke": smoke.summarize(samples)}


JOBS = {"bench": bench, "reference": reference, "compare": compare}


def _encoder(module: str) -> Any:
    """An encoder job (measure.encoder_bench / encoder_eval), imported when it runs."""
    import importlib

    return lambda job: importlib.import_module(f"{__package__}.{module}").job(job)


JOBS.update(encoder_bench=_encoder("encoder_bench"), encoder_embed=_encoder("encoder_eval"))


def handle(job: dict[str, Any]) -> dict[str, Any]:
    """The worker's entry point: run the job of ``job["kind"]``."""
    t0 = time.perf_counter()
    result = JOBS[job["kind"]](job)
    result["worker_seconds"] = time.perf_counter() - t0
    return result
