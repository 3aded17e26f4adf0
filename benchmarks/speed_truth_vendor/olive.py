"""onnxruntime-genai's own loop on an Olive/GenAI bundle: a plain ``og.Generator``
loop, each token stamped when ``get_next_tokens`` hands it over.

onnxruntime-genai has no decode timer of its own, so the figure is
(N - 1) / (t_N - t_1) over this loop's stamps: edgesmith's definition with
nothing between two steps but the two GenAI calls.
"""

from __future__ import annotations

import json
import time

from .common import parse, prompt_ids, rate, write


def main() -> None:
    args = parse(__doc__)
    import numpy as np
    import onnxruntime_genai as og

    config = og.Config(str(args.artifact))
    config.clear_providers()  # the CPU provider, whatever the bundle was built for
    config.overlay(json.dumps({"model": {"decoder": {"session_options": {
        "intra_op_num_threads": args.threads}}}}))
    model = og.Model(config)
    ids = np.asarray(prompt_ids(args), dtype=np.int32)
    runs = []
    for i in range(args.warmup + args.repeat):
        params = og.GeneratorParams(model)
        params.set_search_options(max_length=len(ids) + args.gen_tokens, do_sample=False)
        gen = og.Generator(model, params)
        t0 = time.perf_counter()
        gen.append_tokens(ids)
        stamps: list[float] = []
        while not gen.is_done() and len(stamps) < args.gen_tokens:
            gen.generate_next_token()
            gen.get_next_tokens()
            stamps.append(time.perf_counter())
        del gen
        if i < args.warmup:
            continue
        runs.append({"vendor_tps": rate(stamps), "generated_tokens": len(stamps),
                     "prompt_tokens": len(ids), "ttft_s": stamps[0] - t0 if stamps else None})
    write(args, {"stack": "olive", "timer": "og.Generator loop, per-token perf_counter stamps",
                 "versions": {"onnxruntime_genai": og.__version__}, "threads": args.threads,
                 "runs": runs})


if __name__ == "__main__":
    main()
