"""OpenVINO GenAI's own decode timer: ``LLMPipeline.generate(...).perf_metrics``.

What the timer counts: GenAI stamps a time when each model step returns
(``raw_metrics.m_new_token_times``, right after infer and before sampling
and streaming); TPOT is the mean gap between consecutive stamps (the first
token's prefill excluded) and throughput is 1000 / TPOT. For N tokens that is
(N - 1) / (t_N - t_1), edgesmith's definition, timed inside the C++ loop:
sampling and a streamer's callback fall inside the gaps, Python hand-offs
after the last stamp do not. This loop runs without a streamer, as a plain
``pipe.generate(inputs, config)`` call does.
"""

from __future__ import annotations

import time

from .common import parse, prompt_ids, rate, write


def main() -> None:
    args = parse(__doc__, [("--device", {"default": "CPU"})])
    import numpy as np
    import openvino as ov
    import openvino_genai as g

    pipe = g.LLMPipeline(str(args.artifact), args.device, INFERENCE_NUM_THREADS=args.threads)
    ids = np.asarray([prompt_ids(args)], dtype=np.int64)
    inputs = g.TokenizedInputs(ov.Tensor(ids), ov.Tensor(np.ones_like(ids)))
    config = pipe.get_generation_config()
    config.max_new_tokens = args.gen_tokens
    config.do_sample = False  # greedy
    config.repetition_penalty = 1.0
    runs = []
    for i in range(args.warmup + args.repeat):
        t0 = time.perf_counter()
        result = pipe.generate(inputs, config)
        wall = time.perf_counter() - t0
        if i < args.warmup:
            continue
        pm = result.perf_metrics
        raw = pm.raw_metrics
        stamps = [t / 1e3 for t in raw.m_new_token_times]  # milliseconds of steady_clock
        infer_ms = [d / 1e3 for d in raw.token_infer_durations]
        runs.append({
            "vendor_tps": pm.get_throughput().mean,
            "tpot_ms": pm.get_tpot().mean,
            "generated_tokens": int(pm.get_num_generated_tokens()),
            "result_tokens": len(result.tokens[0]),
            "prompt_tokens": int(pm.get_num_input_tokens()),
            "stamps_tps": rate(stamps),  # the raw stamps, as edgesmith's definition reads them
            # Model time alone: the decode steps' infer durations (the first is the prefill).
            "infer_only_tps": (len(infer_ms) - 1) / (sum(infer_ms[1:]) / 1e3) if len(infer_ms) > 1 else None,
            "ttft_ms": pm.get_ttft().mean,
            "sampling_ms": pm.get_sampling_duration().mean,
            "generate_s": wall,
        })
    write(args, {"stack": "openvino", "timer": "perf_metrics.get_throughput() = 1000 / TPOT",
                 "versions": {"openvino": ov.get_version(), "openvino_genai": g.__version__},
                 "threads": args.threads, "runs": runs})


if __name__ == "__main__":
    main()
