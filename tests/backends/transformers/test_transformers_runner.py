"""The runner against transformers itself, on every architecture of the test kit:
scores equal to a direct forward, greedy tokens equal to transformers' generate,
the Hugging Face tokenizer and chat template; then the options and the limits."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from transformers_testkit import direct_logprobs

from edgesmith import api
from edgesmith.errors import UnsupportedError, UserError
from edgesmith.testing.archs import ARCHITECTURES
from edgesmith.testing.fidelity import compare, scored_ids
from edgesmith.types import RunRequest


def _ids(checkpoint) -> list[int]:
    from transformers import AutoTokenizer

    return scored_ids(AutoTokenizer.from_pretrained(checkpoint), 128)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_scores_and_generation_are_transformers_own(arch, arch_model):
    src = arch_model(arch)
    ids = _ids(src)
    with api.load(src, backend="transformers") as runner:
        got = runner.logprobs(ids)
        fidelity = compare(src, runner, label=f"{arch} / transformers")
    want = direct_logprobs(src, ids)
    assert got.dtype == np.float32 and got.shape == want.shape == (len(ids), got.shape[1])
    # The same float32 forward: equal up to the float32 rounding of the log-softmax.
    assert np.abs(got - want).max() < 1e-4
    assert (got.argmax(axis=1) == want.argmax(axis=1)).all()
    print(fidelity.row())
    assert not fidelity.failures(), fidelity.failures()
    assert fidelity.chat_equal is True


def test_options_change_what_runs(arch_model):
    src = arch_model("qwen2.5")
    ids = _ids(src)
    want = direct_logprobs(src, ids)
    with api.load(src, backend="transformers", options={"attn_implementation": "sdpa"}) as r:
        sdpa = r.logprobs(ids)
        assert r.compute == {"dtype": "f32", "attn_implementation": "sdpa"}
    with api.load(src, backend="transformers", options={"dtype": "bfloat16"}) as r:
        half = r.logprobs(ids)
        assert {str(p.dtype) for p in r._model.parameters()} == {"torch.bfloat16"}
    assert np.abs(sdpa - want).max() < 1e-3  # another kernel, the same float32 arithmetic
    gap = np.abs(half - want).max()
    assert 1e-3 < gap, "bfloat16 weights must move the scores"
    assert (half.argmax(axis=1) == want.argmax(axis=1)).mean() > 0.8


def test_generation_stops_at_the_end_of_sequence_without_yielding_it(arch_model, tmp_path):
    src = arch_model("llama3.2")
    req = RunRequest(prompt="The morning train", max_tokens=6)
    with api.load(src, backend="transformers") as r:
        free = r.generate(req).token_ids
    assert len(free) == 6
    # The same model, told that its third greedy token ends a sequence.
    stop = tmp_path / "stop"
    shutil.copytree(src, stop)
    gen = json.loads((stop / "generation_config.json").read_text())
    eos = gen["eos_token_id"]
    gen["eos_token_id"] = [*(eos if isinstance(eos, list) else [eos]), free[2]]
    (stop / "generation_config.json").write_text(json.dumps(gen))
    with api.load(stop, backend="transformers") as r:
        ended = r.generate(req)
        chunks = list(r.stream_tokens(r.tokenize(req.prompt), req))
    assert ended.token_ids == free[:2] and ended.finish_reason == "stop"
    assert chunks == list(free[:2])


def test_a_paused_stream_leaves_torch_as_it_was(arch_model):
    """The caller runs between tokens: torch's inference mode (thread state) is not left on."""
    import torch

    with api.load(arch_model("llama3.2"), backend="transformers") as r:
        stream = r.stream_tokens(r.tokenize("Once upon a time"), RunRequest(max_tokens=4))
        next(stream)
        assert not torch.is_inference_mode_enabled()
        assert len([next(stream), *stream]) == 3


def test_sampling_follows_the_request(arch_model):
    src = arch_model("qwen3")
    with api.load(src, backend="transformers") as r:
        def run(**kw):
            return r.generate(RunRequest(prompt="Rain came", max_tokens=12, temperature=1.0, **kw)).token_ids

        assert run(seed=1) == run(seed=1)
        assert len({run(seed=s) for s in range(4)}) > 1, "different seeds must sample differently"
        greedy = r.generate(RunRequest(prompt="Rain came", max_tokens=12)).token_ids
        # top_k=1 leaves only the most likely token: sampling is greedy decoding.
        assert run(seed=3, top_k=1) == greedy


def test_bad_token_ids_and_lengths_are_one_line_errors(arch_model):
    with api.load(arch_model("gemma3"), backend="transformers") as r:
        rows = r._rows
        with pytest.raises(UserError, match="at least one token"):
            r.logprobs([])
        with pytest.raises(UserError, match=rf"in \[0, {rows}\).*got {rows + 5}"):
            r.logprobs([1, rows + 5])
        # Gemma 3's <image_soft_token> is a tokenizer id past the text model's embedding.
        soft = r._tok.convert_tokens_to_ids("<image_soft_token>")
        assert soft >= rows
        with pytest.raises(UserError, match="image_soft_token"):
            r.logprobs(r.tokenize("a") + [soft])
        with pytest.raises(UserError, match="exceed the model's context"):
            r.logprobs([1] * (r.context_length + 1))
        with pytest.raises(UserError, match="exceeds the model's context"):
            r.generate(RunRequest(prompt="x", max_tokens=r.context_length))


def test_no_chat_template_is_refused_by_name(arch_model, tmp_path):
    plain = tmp_path / "plain"
    shutil.copytree(arch_model("smollm2"), plain)
    cfg = json.loads((plain / "tokenizer_config.json").read_text())
    del cfg["chat_template"]
    (plain / "tokenizer_config.json").write_text(json.dumps(cfg))
    with api.load(plain, backend="transformers") as r:
        with pytest.raises(UnsupportedError, match="no chat template"):
            r.chat_prompt([{"role": "user", "content": "hi"}])
        assert r.generate(RunRequest(prompt="hi", max_tokens=2)).generated_tokens >= 1


def test_threads_reach_torch(arch_model):
    import torch

    before = torch.get_num_threads()
    try:
        with api.load(arch_model("phi4-mini"), backend="transformers", threads=1):
            assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
