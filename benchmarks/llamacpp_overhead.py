"""Decode speed through edgesmith's Runner vs llama_cpp.Llama called directly.

Same GGUF, same threads, same process, alternating rounds; prints the median
ratio edgesmith/direct of decode tokens/s. Not a test: run it by hand.

    python benchmarks/llamacpp_overhead.py MODEL.gguf [--tokens 128] [--rounds 5] [--threads N]

Without MODEL it builds a tiny llama checkpoint (edgesmith.testing), converts
it to GGUF and quantizes it to Q4_K_M first.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from edgesmith import api
from edgesmith.types import RunRequest

PROMPT = "Once upon a time, in a small town by the sea,"


def _tiny_gguf(work: Path) -> Path:
    from edgesmith.testing import tiny_checkpoint

    ckpt = tiny_checkpoint(work / "ckpt", "llama", hidden_size=512, intermediate_size=1536, layers=4,
                           heads=8, kv_heads=4)
    api.convert(ckpt, "gguf", work / "f16", backend="llamacpp")
    api.quantize(work / "f16", work / "q4", scheme="Q4_K_M", backend="llamacpp")
    return work / "q4" / "model.gguf"


def _direct(llm, prompt_ids: list[int], n: int) -> float:
    """Decode tokens/s measured exactly as edgesmith's Runner defines it."""
    llm.reset()
    times = []
    for _tok in llm.generate(prompt_ids, temp=0.0, top_k=0, top_p=1.0, min_p=0.0, reset=True):
        times.append(time.perf_counter())
        if len(times) >= n:
            break
    return (len(times) - 1) / (times[-1] - times[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", nargs="?")
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.model) if args.model else _tiny_gguf(Path(tmp))
        from llama_cpp import Llama

        with api.load(path, backend="llamacpp", threads=args.threads) as runner:
            threads = runner.threads
            llm = Llama(str(path), n_ctx=runner.context_length, n_threads=threads, n_threads_batch=threads,
                        n_batch=min(512, runner.context_length), verbose=False)
            prompt_ids = runner.tokenize(PROMPT)
            # ignore_eos is not a Runner knob: a random tiny model may stop early, so
            # compare on what each produced, never fewer than 16 tokens.
            req = RunRequest(prompt=PROMPT, max_tokens=args.tokens)
            runner.generate(req)  # warm-up both
            _direct(llm, prompt_ids, args.tokens)
            ratios, es_tps, dl_tps = [], [], []
            for _ in range(args.rounds):
                r = runner.generate(req)
                d = _direct(llm, prompt_ids, r.generated_tokens)
                if r.generated_tokens < 16 or not r.timings.decode_tps:
                    raise SystemExit("the model stopped before 16 tokens; use another prompt or model")
                es_tps.append(r.timings.decode_tps)
                dl_tps.append(d)
                ratios.append(r.timings.decode_tps / d)
            llm.close()
    print(f"model: {path}  threads: {threads}  tokens: {args.tokens}  rounds: {args.rounds}")
    print(f"edgesmith Runner decode tok/s (median): {statistics.median(es_tps):.1f}")
    print(f"llama_cpp.Llama  decode tok/s (median): {statistics.median(dl_tps):.1f}")
    print(f"median ratio edgesmith/direct: {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
