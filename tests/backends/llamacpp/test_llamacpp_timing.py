"""edgesmith's decode timing against llama.cpp's own counters, for the same tokens."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from edgesmith import api
from edgesmith.cli import _Group
from edgesmith.measure.cli import bench
from edgesmith.types import RunRequest

CLI = _Group(commands={"bench": bench})


def test_gguf_decode_speed_agrees_with_llama_cpp(tiny_model, tmp_path):
    import llama_cpp

    # Big enough that a token takes milliseconds, so Python overhead is small.
    source = tiny_model("llama", hidden_size=1024, intermediate_size=2048, layers=4, heads=8, kv_heads=4)
    base = api.convert(source, "gguf", tmp_path / "converted", backend="llamacpp")
    art = api.quantize(base.path, tmp_path / "q4", scheme="Q4_K_M", backend="llamacpp").path
    b = CliRunner().invoke(CLI, ["bench", str(art), "--prompt-tokens", "32", "--gen-tokens", "64",
                                 "--repeat", "3", "--threads", "2", "--json"])
    assert b.exit_code == 0, b.output
    row = json.loads(b.stdout)["artifacts"][0]
    if row["eos_early"]:
        pytest.skip("the model ended its text early; decode rates would cover different lengths")
    assert row["decode_tps"]["median"] > 0
    # Same-run agreement: edgesmith's stopwatch (the Runner.generate that bench's
    # worker calls) against llama.cpp's own counters for the very same tokens, so
    # load from other processes affects both sides alike.
    perf = getattr(llama_cpp, "llama_perf_context", None)
    if perf is None:
        pytest.skip("this llama-cpp-python has no llama_perf_context")
    pairs = []
    with api.load(art, backend="llamacpp", threads=2) as runner:
        ctx = runner._llm._ctx.ctx  # the vendor context behind the runner
        for _ in range(3):
            llama_cpp.llama_perf_context_reset(ctx)
            result = runner.generate(RunRequest(prompt=" ".join(["word"] * 28), max_tokens=64))
            data = perf(ctx)
            if result.generated_tokens < 16:
                pytest.skip("the model ended its text early")
            pairs.append((result.timings.decode_tps, data.n_eval / (data.t_eval_ms / 1000)))
    ours, theirs = sorted(pairs)[1]
    assert ours == pytest.approx(theirs, rel=0.15), pairs
