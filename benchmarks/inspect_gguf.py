"""`edgesmith inspect` of a GGUF with a large vocabulary, beside gguf's own reader.

Writes a GGUF whose metadata carries a 262,144-token vocabulary (Gemma 3's
size: tokens, scores, token types, merges) and a few tiny tensors, then times,
in the same run, edgesmith's inspect (its direct metadata parser) and
``gguf.GGUFReader`` reading the same file. Goal: inspect under 1 s.

    python benchmarks/inspect_gguf.py [--vocab 262144] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def write(path: Path, vocab: int) -> None:
    import gguf
    import numpy as np

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("inspect-benchmark")
    w.add_context_length(8192)
    w.add_tokenizer_model("gpt2")
    w.add_token_list([f"tok{i}" for i in range(vocab)])
    w.add_token_scores([float(-i) for i in range(vocab)])
    w.add_token_types([1] * vocab)
    w.add_token_merges([f"t{i} k{i}" for i in range(vocab)])
    for n in range(4):
        w.add_tensor(f"blk.{n}.attn_q.weight", np.zeros((64, 64), dtype=np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vocab", type=int, default=262144)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    import gguf

    from edgesmith import api

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big-vocab.gguf"
        write(path, args.vocab)
        size = path.stat().st_size / 2**20
        ours = timed(lambda: api.inspect(path), args.repeats)
        theirs = timed(lambda: gguf.GGUFReader(str(path), "r").fields["tokenizer.ggml.tokens"].contents(),
                       args.repeats)
    print(f"GGUF with a {args.vocab:,}-token vocabulary ({size:.1f} MiB), {args.repeats} repeats each:")
    for name, t in (("edgesmith inspect", ours), ("gguf.GGUFReader + tokens", theirs)):
        sd = statistics.stdev(t) if len(t) > 1 else 0.0
        print(f"  {name:26s} {statistics.mean(t):7.3f} s ± {sd:.3f} (min {min(t):.3f})")
    print(f"  goal: inspect under 1 s -> {'met' if max(ours) < 1.0 else 'NOT met'}")


if __name__ == "__main__":
    main()
