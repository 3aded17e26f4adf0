"""The definitions every figure is measured by; embedded in each JSON result
and written out in docs/measuring.md."""

from __future__ import annotations

import platform
import sys
from datetime import datetime, timezone
from typing import Any

BENCH = {
    "load_s": "seconds from asking the backend to load the artifact until it returns a runner "
              "(edgesmith.api.load), in a fresh process",
    "ttft_s": "time to first token: from the start of generate (prompt already tokenized) to the "
              "first generated token being available",
    "prefill_tps": "prompt tokens / ttft_s, at exactly --prompt-tokens prompt tokens "
                   "(special tokens included) built with the artifact's own tokenizer",
    "decode_tps": "(generated tokens - 1) / (time of last token - time of first token), greedy, "
                  "over up to --gen-tokens tokens; when end-of-sequence came earlier the run is "
                  "flagged eos_early and the rate is over the tokens generated. The row's figure is "
                  "that of its first test that generates (decode_test)",
    "tests": "the shapes timed: ppP+tgG = a prompt of P tokens, then G generated (prefill at P, "
             "decode from depth P); tgG@dD = G tokens decoded with D tokens already in the KV cache; "
             "with --llama-bench, ppP = P prompt tokens and one generated (llama-bench's pp) and tgG = "
             "G decode steps from an empty cache (a prompt of the fewest tokens the tokenizer makes; "
             "llama-bench's tg). Prefill at a depth is not measured: a run always starts from an empty cache",
    "peak_rss_mb": "peak resident set size of the worker process (MiB) after the last repeat: "
                   "the interpreter, the backend and the model; rss_before_load_mb is the part "
                   "before loading",
    "size_bytes": "bytes on disk of the artifact (the file, or every file in its directory)",
    "weights_bytes": "bytes of the weight files (.gguf, .safetensors, .bin, .onnx, .data, ...)",
    "decode_bytes": "bytes one decoded token reads, counted from the artifact's tensor table (headers "
                    "only): every weight tensor once at its stored size, the output projection included; "
                    "one row of the input embedding and of other token- or position-indexed tables; plus "
                    "the KV cache at the mean decode depth (prompt tokens + generated / 2) in the stack's "
                    "default cache type. Where the tensors cannot be listed, weights_bytes stands in and "
                    "the method says so",
    "roofline_fraction": "decode_tps (mean) x decode_bytes / bandwidth_gb_per_s: the share of the "
                         "machine's memory read rate decoding uses; above 1 would mean a wrong count",
    "bandwidth_gb_per_s": "memory read bandwidth: numpy maximum.reduce over an int32 view of a buffer far "
                          "larger than the caches (1 GiB), split over threads; bytes read / best of 20 "
                          "passes, the better of 1 and --threads threads (runs: every pass of that count; "
                          "copy_gb_per_s: a STREAM copy, bytes read + written, for comparison only)",
    "statistics": "per test, --warmup untimed generations, then --repeat timed ones in the same "
                  "process; mean ± sd (sample standard deviation) and n, lo/hi the 95 % Student-t "
                  "interval of the mean; median, min and max are kept too",
}

EVAL = {
    "windows": "the reference's tokenizer splits the text into non-overlapping windows of "
               "--window tokens; each window is scored from its own start (after the special "
               "tokens the tokenizer adds, such as BOS); the first token of a window is context "
               "only. Windows are scored in a fixed shuffled order spread over the whole text. "
               "Every artifact gets the same token ids and windows as the reference.",
    "sequential": "round 1 scores max(4 windows, 2048 tokens); after each round every gate is "
                  "pass/fail/undecided, and artifacts still undecided on a quality gate score the "
                  "next round (the windows scored so far, doubled) until decided, --max-tokens is "
                  "spent or the text ends; --windows N scores exactly N windows in one round",
    "intervals": "every quality figure has se (standard error) and lo/hi, its 95 % interval. Tokens "
                 "of a window are correlated, so windows are the sampling unit: the cluster-robust "
                 "standard error of a ratio estimator over windows and Student's t with windows - 1 "
                 "degrees of freedom (no interval from a single window); perplexity and its ratio "
                 "on the log scale; kl_p99 from 1000 resamples of whole windows",
    "perplexity": "exp(mean negative log-likelihood of each scored token), from Runner.logprobs",
    "ppl_ratio": "perplexity of the artifact / perplexity of the reference, on the same tokens "
                 "(exp of the mean paired difference of log-likelihoods)",
    "kl": "mean over scored tokens of KL(reference || artifact) of the next-token distributions, "
          "in nats, over the reference's --kl-top-k most likely tokens plus one bin for all the "
          "others (exact when k covers the vocabulary, else a lower bound; ref_tail_mass is the "
          "mean probability in that last bin)",
    "kl_p99": "99th percentile of the per-token KL: how bad the worst positions are",
    "top1": "share of scored positions where the artifact's most likely next token is the "
            "reference's",
    "size_ratio": "size on disk of the artifact / size on disk of the reference (exact: no interval)",
    "decode_tps": "mean decode tokens/s from the `edgesmith bench` result given with --speed; eval "
                  "itself times nothing",
    "speedup": "decode_tps of the artifact / decode_tps of the reference, both from the same bench "
               "result, with a 95 % interval from the two runs' spreads; without it the speed gate "
               "is not checked",
    "gates": "a gate passes when the figure's whole 95 % interval is on the passing side of the "
             "limit, fails when it is wholly on the failing side, and is otherwise undecided; the "
             "verdict is fail if any gate fails, else undecided if any is undecided, else pass",
    "smoke": "greedy generation from fixed prompts must not be empty, one token repeated, or "
             "mostly U+FFFD / control characters",
    "tasks": "with --tasks, each lm-evaluation-harness task run through edgesmith's lm-eval model "
             "(edgesmith.lmeval) on the reference and every artifact, --limit documents each (lm-eval's "
             "first N), zero-shot: per task its metrics as lm-eval computes them (the share of documents "
             "right, with lm-eval's standard error), the first of acc, exact_match, first_word, acc_norm "
             "as its accuracy. drop: reference minus artifact accuracy in points, with a 95 % interval "
             "from the paired per-document differences (Student's t, documents - 1 degrees of freedom), "
             "or from the two standard errors combined when documents cannot be paired; the "
             "--max-task-drop gate passes when the whole interval is at or under the limit",
}


def environment() -> dict[str, Any]:
    from importlib import metadata

    try:
        version = metadata.version("edgesmith")
    except metadata.PackageNotFoundError:
        version = None
    return {
        "edgesmith": version,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": _cpu_name(),
    }


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
