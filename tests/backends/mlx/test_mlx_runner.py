"""The MLX runner: greedy decoding agrees with the model's own logits,
scoring in chunks equals one forward pass, options are checked."""

from __future__ import annotations

import numpy as np
import pytest

from edgesmith import api
from edgesmith.errors import UserError
from edgesmith.types import RunRequest


def test_greedy_stream_follows_the_logits(mlx_q4):
    with api.load(mlx_q4("qwen2"), backend="mlx") as runner:
        req = RunRequest(prompt="The library was quiet", max_tokens=6)
        result = runner.generate(req)
        ids = runner.prompt_ids(req)
        seq = list(ids)
        for tok in result.token_ids:
            lp = runner.logprobs(seq)
            assert int(np.argmax(lp[-1])) == tok
            seq.append(tok)
        assert runner.context_length == 2048


def test_chunked_scoring_equals_one_pass(mlx_f16):
    import mlx.core as mx
    from mlx_lm import load

    path = mlx_f16("llama")
    rng = np.random.default_rng(0)
    ids = rng.integers(3, 380, size=150).tolist()
    with api.load(path, backend="mlx") as runner:
        runner.score_chunk = 64  # three chunks through the KV cache (512 by default)
        lp = runner.logprobs(ids)
    model, _ = load(str(path))
    model.set_dtype(mx.float32)  # as the runner does on the CPU
    logits = model(mx.array(ids)[None])[0]
    ref = np.array(logits - mx.logsumexp(logits, axis=-1, keepdims=True))
    assert lp.shape == ref.shape == (150, model.args.vocab_size)
    assert np.allclose(lp, ref, atol=1e-3)


def test_dtype_option_keeps_float16(mlx_q4):
    with api.load(mlx_q4("llama"), backend="mlx", options={"dtype": "float16"}) as runner:
        assert runner.compute_dtype == "float16"
        result = runner.generate(RunRequest(prompt="Hi", max_tokens=2))
    assert result.extra["mlx_compute_dtype"] == "float16" and result.generated_tokens >= 1


def test_seeds_change_samples_and_repeat(mlx_q4):
    with api.load(mlx_q4("llama"), backend="mlx") as runner:
        req = dict(prompt="Rain came", max_tokens=8, temperature=1.0)
        a = runner.generate(RunRequest(seed=1, **req))
        b = runner.generate(RunRequest(seed=1, **req))
        c = runner.generate(RunRequest(seed=2, **req))
        k = runner.generate(RunRequest(seed=3, top_k=1, **req))
        g = runner.generate(RunRequest(prompt="Rain came", max_tokens=8))
    assert a.token_ids == b.token_ids and a.token_ids != c.token_ids
    assert k.token_ids == g.token_ids  # top-k 1 is greedy whatever the temperature


def test_peak_memory_is_reported(mlx_q4):
    result = api.run(mlx_q4("phi3"), "Hello", max_tokens=3, backend="mlx")
    assert 0 < result.extra["mlx_peak_memory_mb"] < result.timings.peak_rss_mb


@pytest.mark.parametrize("options,match", [
    ({"device": "gpu"}, "no GPU"),
    ({"device": "tpu"}, "mlx load mlx: option device=tpu is not valid; give one of cpu, gpu"),
    ({"colour": "x"}, "mlx load mlx has no option 'colour'"),
    ({"prefill_step": "many"}, "prefill_step=many .* whole number"),
])
def test_bad_run_options(options, match, mlx_q4):
    import sys

    if sys.platform == "darwin" and options.get("device") == "gpu":
        pytest.skip("Metal is available here")
    with pytest.raises(UserError, match=match):
        api.load(mlx_q4("llama"), backend="mlx", options=options)


def test_bad_scoring_inputs(mlx_q4):
    with api.load(mlx_q4("llama"), backend="mlx") as runner:
        with pytest.raises(UserError, match="at least one"):
            runner.logprobs([])
        with pytest.raises(UserError, match="token ids must be in"):
            runner.logprobs([1, 10**6])
