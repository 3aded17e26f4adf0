"""llama.cpp's own decode timer: llama-cpp-python's generate loop, read through
llama.cpp's perf context (``llama_perf_context``: t_eval_ms over n_eval).

What the timer counts: ``t_eval_ms`` is the time spent in llama_decode for
single-token batches (the decode steps), ``n_eval`` how many there were. For
N generated tokens there are N - 1 such steps (the last token is sampled but
never fed back), the same count of intervals edgesmith's
(N - 1) / (t_last - t_first) spans; unlike it, the timer leaves out sampling
and everything in Python between two decode calls.
"""

from __future__ import annotations

import time

from .common import parse, prompt_ids, rate, write


def main() -> None:
    args = parse(__doc__, [("--n-ctx", {"type": int, "default": 4096}),
                           ("--n-batch", {"type": int, "default": 512})])
    import llama_cpp
    from llama_cpp import Llama

    # The one model parameter Llama() has no argument for, set as edgesmith sets it
    # (use_extra_bufts off on AMX CPUs, where llama.cpp's AMX buffers crash).
    from edgesmith_llamacpp.runner import extra_buffers, repack_wanted

    path = args.artifact / "model.gguf" if args.artifact.is_dir() else args.artifact
    with extra_buffers(repack_wanted("auto")):
        llm = Llama(str(path), n_ctx=args.n_ctx, n_batch=min(args.n_batch, args.n_ctx),
                    n_threads=args.threads, n_threads_batch=args.threads, n_gpu_layers=0, verbose=False)
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    ids = prompt_ids(args)
    runs = []
    for i in range(args.warmup + args.repeat):
        llm.reset()  # no prefix reuse: every repeat evaluates the whole prompt
        llama_cpp.llama_perf_context_reset(llm.ctx)
        stamps: list[float] = []
        t0 = time.perf_counter()
        # Greedy: temp 0 puts llama.cpp's greedy sampler at the end of the chain.
        for tok in llm.generate(ids, temp=0.0, top_k=0, top_p=1.0, min_p=0.0, typical_p=1.0,
                                repeat_penalty=1.0, reset=True):
            if llama_cpp.llama_vocab_is_eog(vocab, tok):
                break
            stamps.append(time.perf_counter())
            if len(stamps) >= args.gen_tokens:
                break
        perf = llama_cpp.llama_perf_context(llm.ctx)
        if i < args.warmup:
            continue
        runs.append({
            "vendor_tps": perf.n_eval / (perf.t_eval_ms / 1e3) if perf.t_eval_ms > 0 else None,
            "generated_tokens": len(stamps),
            "prompt_tokens": perf.n_p_eval,
            "n_eval": perf.n_eval,
            "t_eval_ms": perf.t_eval_ms,
            "prefill_tps": perf.n_p_eval / (perf.t_p_eval_ms / 1e3) if perf.t_p_eval_ms > 0 else None,
            "loop_tps": rate(stamps),  # the same loop, stamped as edgesmith stamps
            "ttft_s": stamps[0] - t0 if stamps else None,
        })
    llm.close()
    write(args, {"stack": "llamacpp", "timer": "llama_perf_context: n_eval / t_eval_ms",
                 "versions": {"llama_cpp_python": llama_cpp.__version__}, "threads": args.threads,
                 "n_ctx": args.n_ctx, "runs": runs})


if __name__ == "__main__":
    main()
