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
                  "flagged eos_early and the rate is over the tokens generated",
    "peak_rss_mb": "peak resident set size of the worker process (MiB) after the last repeat: "
                   "the interpreter, the backend and the model; rss_before_load_mb is the part "
                   "before loading",
    "size_bytes": "bytes on disk of the artifact (the file, or every file in its directory)",
    "weights_bytes": "bytes of the weight files (.gguf, .safetensors, .bin, .onnx, .data, ...), "
                     "taken as the bytes read per decoded token",
    "roofline_fraction": "decode_tps (median) x weights_bytes / memory bandwidth: how close decode "
                         "comes to the limit set by reading every weight once per token",
    "bandwidth_gb_per_s": "streaming copy with numpy over arrays far larger than the caches: "
                          "(bytes read + bytes written) / best time, best of 1 and --threads threads",
    "statistics": "one warm-up generation, then --repeat timed ones; median, min and max over them",
}

EVAL = {
    "windows": "the reference's tokenizer splits the text into non-overlapping windows of "
               "--window tokens; each window is scored from its own start (after the special "
               "tokens the tokenizer adds, such as BOS); the first token of a window is context "
               "only. Every artifact gets the same token ids and windows.",
    "perplexity": "exp(mean negative log-likelihood of each scored token), from Runner.logprobs",
    "ppl_ratio": "perplexity of the artifact / perplexity of the reference",
    "kl": "mean over scored tokens of KL(reference || artifact) of the next-token distributions, "
          "in nats, over the reference's --kl-top-k most likely tokens plus one bin for all the "
          "others (exact when k covers the vocabulary, else a lower bound; ref_tail_mass is the "
          "mean probability in that last bin)",
    "top1": "share of scored positions where the artifact's most likely next token is the "
            "reference's",
    "size_ratio": "size on disk of the artifact / size on disk of the reference",
    "decode_tps": "median decode tokens/s from the `edgesmith bench` result given with --speed "
                  "when it measured both this artifact and the reference (speed_source: bench), "
                  "else of the smoke-test generations after the first (speed_source: smoke test, "
                  "a rough figure)",
    "speedup": "decode_tps of the artifact / decode_tps of the reference",
    "smoke": "greedy generation from fixed prompts must not be empty, one token repeated, or "
             "mostly U+FFFD / control characters",
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
