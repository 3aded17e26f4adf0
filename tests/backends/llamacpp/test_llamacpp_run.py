"""Running GGUFs through edgesmith's Runner on llama-cpp-python."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgesmith import api
from edgesmith.types import RunRequest
from edgesmith.util import physical_cores
from edgesmith_llamacpp.runner import repack_wanted


def test_greedy_matches_llama_cpp_directly(quantized_of) -> None:
    from llama_cpp import Llama

    path = quantized_of("llama", "Q4_K_M")
    with api.load(path, backend="llamacpp", threads=1) as runner:
        ours = runner.generate(RunRequest(prompt="The morning train", max_tokens=12))
        prompt = runner.tokenize("The morning train")
    llm = Llama(str(path / "model.gguf"), n_ctx=512, n_threads=1, verbose=False)
    try:
        direct = []
        for tok in llm.generate(prompt, temp=0.0, top_k=0, top_p=1.0, min_p=0.0):
            if llm.token_eos() == tok or len(direct) == 12:
                break
            direct.append(tok)
    finally:
        llm.close()
    assert list(ours.token_ids) == direct[: len(ours.token_ids)]


def test_seeds_change_samples(gguf_of) -> None:
    with api.load(gguf_of("llama"), backend="llamacpp") as runner:
        runs = {tuple(runner.generate(RunRequest(prompt="Rain came", max_tokens=10, temperature=1.5,
                                                 seed=s)).token_ids) for s in range(4)}
    assert len(runs) > 1


def test_logprobs_agree_with_llama_logits_all(gguf_of) -> None:
    from llama_cpp import Llama

    path = gguf_of("qwen2") / "model.gguf"
    with api.load(path, backend="llamacpp") as runner:
        ids = runner.tokenize("The library was quiet except for the turning of pages.")
        ours = runner.logprobs(ids)
    llm = Llama(str(path), n_ctx=256, logits_all=True, verbose=False)
    try:
        llm.eval(ids)
        ref = Llama.logits_to_logprobs(np.asarray(llm.scores[: len(ids)]))
    finally:
        llm.close()
    assert np.allclose(ours, ref, atol=1e-4)


def test_chat_prompt_uses_gguf_template(gguf_of) -> None:
    with api.load(gguf_of("qwen2"), backend="llamacpp") as runner:
        prompt = runner.chat_prompt([{"role": "user", "content": "Hi"}])
    assert prompt == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"


def test_threads_default_to_physical_cores_and_can_be_set(gguf_of) -> None:
    with api.load(gguf_of("llama"), backend="llamacpp") as runner:
        assert runner.threads == physical_cores() >= 1
    with api.load(gguf_of("llama"), backend="llamacpp", threads=1) as runner:
        assert runner.threads == 1


def test_unknown_run_option(gguf_of) -> None:
    from edgesmith.errors import UserError

    with pytest.raises(UserError, match="n_ctx"):
        api.load(gguf_of("llama"), backend="llamacpp", options={"ctx": "9"})


def test_cli_convert_quantize_run(tiny_model, tmp_path: Path) -> None:
    """The issue's path from the command line: convert -> quantize Q4_K_M -> run."""
    import subprocess
    import sys

    from edgesmith.testing.fixtures import env_offline

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "edgesmith.cli", *args], capture_output=True,
                              text=True, env=env_offline())

    f16, q4 = tmp_path / "f16", tmp_path / "q4"
    r = cli("convert", str(tiny_model("llama")), "--to", "gguf", "-o", str(f16), "--backend", "llamacpp")
    assert r.returncode == 0, r.stderr
    r = cli("quantize", str(f16), "-o", str(q4), "--scheme", "Q4_K_M", "--backend", "llamacpp")
    assert r.returncode == 0, r.stderr
    assert (q4 / "edgesmith.json").exists() and (q4 / "model.gguf").exists()
    r = cli("run", str(q4), "-p", "The morning train", "--max-tokens", "4", "--backend", "llamacpp")
    assert r.returncode == 0, r.stderr
    r = cli("compile", str(q4), "--device", "cpu", "-o", str(tmp_path / "c"), "--backend", "llamacpp")
    assert r.returncode == 2 and "no ahead-of-time compile step" in r.stderr


def test_repack_follows_the_option_and_the_cpu(gguf_of) -> None:
    amx = "amx_int8" in Path("/proc/cpuinfo").read_text(errors="replace")
    assert repack_wanted("auto") is not amx
    assert repack_wanted("on") and not repack_wanted("off")
    # off works everywhere: a multi-token prefill and the same greedy tokens as the default
    path = gguf_of("llama")
    outs = []
    for choice in ("auto", "off"):
        with api.load(path, backend="llamacpp", options={"repack": choice}, threads=1) as runner:
            outs.append(runner.generate(RunRequest(prompt="The morning train left the valley", max_tokens=6)).token_ids)
    assert outs[0] == outs[1]
