"""mlx-lm's own decode figure: ``stream_generate``'s ``generation_tps``.

What the figure counts: mlx-lm starts its clock when the first token arrives
and reports, with the n-th response, n / (now - that start). For N tokens the
last response gives N / (t_N - t_1): one token more than the N - 1 intervals
it spans, so it reads N / (N - 1) higher than edgesmith's definition for the
same stamps (+0.8 % at 128 tokens); the time also holds mlx-lm's streaming
detokenizer, which runs on every token.

``--dtype float32`` casts the float parameters first, as edgesmith does on
the CPU by default (MLX's float16 CPU kernels are far slower); ``--dtype
model`` keeps what the checkpoint holds, as plain ``mlx_lm.load`` does.
"""

from __future__ import annotations

import time

from .common import parse, prompt_ids, rate, write


def main() -> None:
    args = parse(__doc__, [("--dtype", {"default": "float32", "choices": ["float32", "model"]}),
                           ("--prefill-step", {"type": int, "default": 2048})])
    import mlx.core as mx
    from mlx_lm import load, stream_generate
    from mlx_lm.sample_utils import make_sampler

    model, tokenizer = load(str(args.artifact))
    if args.dtype == "float32":
        model.set_dtype(mx.float32)  # floating parameters only; packed quantized ones stay
        mx.eval(model.parameters())
    ids = prompt_ids(args)
    sampler = make_sampler(temp=0.0)  # argmax
    runs = []
    for i in range(args.warmup + args.repeat):
        stamps: list[float] = []
        last = None
        t0 = time.perf_counter()
        for response in stream_generate(model, tokenizer, ids, max_tokens=args.gen_tokens,
                                        sampler=sampler, prefill_step_size=args.prefill_step):
            stamps.append(time.perf_counter())
            last = response
        if i < args.warmup or last is None:
            continue
        runs.append({"vendor_tps": last.generation_tps, "generated_tokens": last.generation_tokens,
                     "prompt_tokens": last.prompt_tokens, "prefill_tps": last.prompt_tps,
                     "finish_reason": last.finish_reason, "loop_tps": rate(stamps),
                     "ttft_s": stamps[0] - t0 if stamps else None})
    import importlib.metadata as md

    write(args, {"stack": "mlx", "timer": "stream_generate: last response's generation_tps",
                 "versions": {"mlx": md.version("mlx"), "mlx_lm": md.version("mlx-lm")},
                 "device": str(mx.default_device()), "dtype": args.dtype, "threads": args.threads,
                 "runs": runs})


if __name__ == "__main__":
    main()
