"""The edgesmith side of benchmarks/speed_truth.py where the CLI is not the way.

Run by the driver with a backend environment's Python (edgesmith and the
backend installed there), one job per call, answering with JSON in ``--out``:

- ``prompt``: the prompt token ids `edgesmith bench` feeds for an artifact,
  built exactly as its worker does (the shipped text cut to --prompt-tokens
  with the artifact's own tokenizer), so the vendor loop gets the same ids;
  plus the settings the runner chose that a vendor loop has to match.
- ``qnn-build``: a tiny fixed-shape encoder made on the spot (the QNN tests'
  builder), quantized to QDQ a8w8 and compiled to an EPContext model, and an
  input .npz for each (with ``--artifact``: only the inputs of that model).
- ``qnn-run``: per-inference latency through ``edgesmith.api.load(...)``'s
  runner (``Runner.infer``, the array path; `edgesmith bench` refuses array
  models), as the runner itself times it (``last_timings["infer_s"]``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

QNN_TESTKIT = Path(__file__).resolve().parents[1] / "tests" / "backends" / "qnn"


def prompt(args: argparse.Namespace) -> dict[str, Any]:
    from edgesmith import api
    from edgesmith.measure.text import exact_prompt, load_text
    from edgesmith.types import RunRequest

    with api.load(args.artifact, threads=args.threads) as runner:
        text, _ = load_text(None)
        # The same two calls as edgesmith.measure.worker.bench, then the ids
        # Runner.generate makes of that prompt.
        prompt_text, n = exact_prompt(runner.tokenize, runner.detokenize, text, args.prompt_tokens)
        ids = runner.prompt_ids(RunRequest(prompt=prompt_text, max_tokens=args.gen_tokens))
        return {"ids": ids, "prompt_tokens": n, "backend": runner.backend,
                "context_length": runner.context_length,
                "threads": getattr(runner, "threads", args.threads),
                "compute_dtype": getattr(runner, "compute_dtype", None)}


def qnn_build(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np

    from edgesmith import api

    root = Path(args.dir)
    root.mkdir(parents=True, exist_ok=True)
    if args.artifact:  # a model of the caller's: only its inputs are needed
        with api.load(args.artifact, backend="qnn") as runner:
            np.savez(root / "given-feed.npz", **_feed(runner.input_specs, np))
        return {"given": {"artifact": args.artifact, "feed": str(root / "given-feed.npz")}}
    sys.path.insert(0, str(QNN_TESTKIT))
    from qnn_testkit import SHAPE, build_encoder

    fp32 = build_encoder(root / "fp32", hidden=args.hidden, ffn=4 * args.hidden, layers=args.layers)
    # No calibration file: the backend's synthetic samples fix the ranges,
    # which is all a latency measurement needs.
    api.quantize(fp32, root / "qdq", scheme="a8w8", backend="qnn", options={**SHAPE, "placement": "0"})
    api.compile(root / "qdq", output=root / "npu", device="npu", backend="qnn")
    out = {}
    for name in ("qdq", "npu"):
        with api.load(root / name, backend="qnn") as runner:
            feed = _feed(runner.input_specs, np)
        np.savez(root / f"{name}-feed.npz", **feed)
        out[name] = {"artifact": str(root / name), "feed": str(root / f"{name}-feed.npz"),
                     "inputs": {k: list(v.shape) for k, v in feed.items()}}
    return out


def _feed(specs: Any, np: Any) -> dict[str, Any]:
    """Fixed inputs for ``specs``: ids 0..99 repeated, an all-ones mask, zeros otherwise."""
    feed = {}
    for name, (dims, dtype) in specs.items():
        dtype = np.dtype(dtype or np.int64)
        if name == "attention_mask":
            feed[name] = np.ones(dims, dtype)
        elif np.issubdtype(dtype, np.integer):
            feed[name] = (np.arange(int(np.prod(dims))) % 100).reshape(dims).astype(dtype)
        else:
            feed[name] = np.zeros(dims, dtype)
    return feed


def qnn_run(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np

    from edgesmith import api

    with np.load(args.feed) as z:
        feed = {k: z[k] for k in z.files}
    with api.load(args.artifact, backend="qnn", threads=args.threads) as runner:
        for _ in range(args.warmup):
            runner.infer(feed)
        reported, wall = [], []
        for _ in range(args.repeat):
            t = time.perf_counter()
            runner.infer(feed)
            wall.append(time.perf_counter() - t)
            reported.append(runner.last_timings["infer_s"])
        return {"providers": runner.providers, "load_s": runner.load_s,
                "runs": [{"rate": len(reported) / sum(reported),
                          "latency_ms": 1e3 * sum(reported) / len(reported),
                          # Around the whole call: infer() checks the inputs first.
                          "wall_rate": len(wall) / sum(wall), "n": len(reported)}]}


JOBS = {"prompt": prompt, "qnn-build": qnn_build, "qnn-run": qnn_run}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("job", choices=sorted(JOBS))
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--artifact")
    ap.add_argument("--dir")
    ap.add_argument("--feed")
    ap.add_argument("--threads", type=int)
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--gen-tokens", type=int, default=128)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=200)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    args = ap.parse_args()
    args.out.write_text(json.dumps(JOBS[args.job](args)))


if __name__ == "__main__":
    main()
