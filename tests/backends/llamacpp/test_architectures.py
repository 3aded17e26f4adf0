"""The architecture matrix on llama.cpp, held to transformers.

Each tiny checkpoint of edgesmith.testing.archs (Llama 3.2, Qwen2.5, Qwen3,
Gemma 3, Phi-3.5, Phi-4-mini, SmolLM2) is converted with llama.cpp's own
converter to an **f32** GGUF and run with an **f32 KV cache**
(``kv_cache=f32``): with llama.cpp's default f16 cache alone the mean KL is
~5e-5 to 2e-4 and near-ties flip (Gemma 3's greedy run diverged at token 13
on a top-2 gap of 0.003), which would blur conversion faults into rounding.
f32 weights and cache leave only kernel arithmetic (KL ~1e-9; Gemma 3 ~1e-5
from ggml's f16 GELU table), so the bounds below (top-1 >= 0.99, mean KL
<= 1e-3, every greedy token, identical token ids) mean conversion faults.

Also: the GGUF loads in llama-cpp-python's own ``Llama``; the GGUF turns back
into a Hugging Face checkpoint that transformers runs as the original; and a
deliberately broken conversion (RoPE bases halved) is caught.
"""

from __future__ import annotations

import numpy as np
import pytest

llama_cpp = pytest.importorskip("llama_cpp", reason="edgesmith-llamacpp is not installed with its stack")
pytest.importorskip("torch", reason="the transformers reference needs torch")
pytest.importorskip("transformers", reason="the transformers reference needs transformers")

from edgesmith import api  # noqa: E402
from edgesmith.testing.archs import ARCHITECTURES  # noqa: E402
from edgesmith.testing.fidelity import (  # noqa: E402
    TransformersRunner,
    assert_caught,
    beyond_embedding,
    compare,
    copy_with_config,
    record,
)

#: Full precision: f32 weights, f32 keys and values.
FULL = {"kv_cache": "f32"}


@pytest.fixture(scope="module")
def gguf(arch_conversion):
    """``gguf(arch)``: the arch's checkpoint converted to an f32 GGUF (a directory), once."""
    return lambda arch: arch_conversion(arch, "gguf", "llamacpp", dtype="f32")


def _check(result, record_property) -> None:
    record_property("fidelity", result.as_dict())
    record(result)
    assert not result.failures(), result.row() + "\n" + "\n".join(result.failures())


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_gguf_runs_as_transformers_does(arch, arch_model, gguf, record_property):
    art = gguf(arch)
    assert art.details["tensor_types"] == {"F32": art.details["tensors"]}
    with api.load(art.path, backend="llamacpp", options=FULL) as runner:
        result = compare(arch_model(arch), runner, label=f"{arch} / llamacpp f32")
    _check(result, record_property)
    assert result.chat_equal


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_gguf_loads_in_llama_cpp_itself(arch, arch_model, gguf):
    import json

    cfg = json.loads((arch_model(arch) / "config.json").read_text())
    # logits_all: with it off, llama-cpp-python fills only the last row of scores after eval.
    llm = llama_cpp.Llama(model_path=str(gguf(arch).main_file), n_ctx=256, n_threads=2, verbose=False, logits_all=True,
                          type_k=llama_cpp.GGML_TYPE_F32, type_v=llama_cpp.GGML_TYPE_F32)
    try:
        assert llm.n_vocab() == cfg["vocab_size"]
        ids = llm.tokenize(b"The clockmaker opened the shutters.", add_bos=True)
        llm.eval(ids)
        logits = np.asarray(llm.scores[len(ids) - 1])
        assert logits.shape == (cfg["vocab_size"],) and np.isfinite(logits).all()
    finally:
        llm.close()


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_gguf_imports_back_as_the_same_model(arch, arch_model, gguf, tmp_path, record_property):
    """GGUF -> Hugging Face (f32): transformers runs the import as it runs the original."""
    art = api.convert(gguf(arch).path, "hf", tmp_path / "hf", backend="llamacpp", dtype="f32")
    with TransformersRunner(art.path) as runner:
        result = compare(arch_model(arch), runner, label=f"{arch} / gguf -> hf f32")
    _check(result, record_property)


def test_token_past_the_embedding_becomes_text(arch_model, gguf):
    """Gemma 3's <image_soft_token> has no embedding row; the GGUF's vocabulary stops at the
    rows, so llama.cpp reads the string as text and can still score it."""
    assert beyond_embedding(arch_model("gemma3")) == {"<image_soft_token>": 512}
    with api.load(gguf("gemma3").path, backend="llamacpp", options=FULL) as runner:
        ids = runner.tokenize("Look: <image_soft_token> here")
        assert max(ids) < 512
        assert np.isfinite(runner.logprobs(ids)).all()


def test_harness_catches_a_broken_conversion(arch_model, tmp_path, record_property):
    """A conversion of the checkpoint with every RoPE base halved, held to the original."""
    src = arch_model("llama3.2")
    broken = copy_with_config(src, tmp_path / "checkpoint", rope_theta=0.5)
    art = api.convert(broken, "gguf", tmp_path / "gguf", backend="llamacpp", dtype="f32")
    with api.load(art.path, backend="llamacpp", options=FULL) as runner:
        result = compare(src, runner, label="llama3.2 / llamacpp f32, rope_theta x 0.5")
    record_property("fidelity", result.as_dict())
    record(result)
    assert_caught(result)


# -- the fixes the matrix needed, one by one --------------------------------------


@pytest.mark.parametrize(("factor", "original"), [(8.0, 8192), (32.0, 8192), (16.0, 4096)])
def test_llama3_rope_parameters_come_back_from_rope_freqs(factor, original):
    """Llama 3.1 (factor 8) and 3.2 (32) as the converter writes them: only the divisors."""
    from edgesmith_llamacpp.ggufconfig import llama3_divisors, llama3_parameters

    for dim in (32, 64, 128):
        divisors = llama3_divisors(500000.0, dim, factor, 1.0, 4.0, original).astype(np.float32)
        got = llama3_parameters(divisors.astype(np.float64), 500000.0, dim)
        again = llama3_divisors(500000.0, dim, got["factor"], got["low_freq_factor"], got["high_freq_factor"],
                                got["original_max_position_embeddings"])
        np.testing.assert_allclose(again, divisors, rtol=1e-5)
        assert got["rope_type"] == "llama3" and got["factor"] == factor


def test_pre_tokenizers_of_qwen2_and_phi4_are_recognised(arch_model):
    """Retrained tokenizers are named from their declared rules: Qwen2's (with its NFC
    normalizer) and o200k's (Phi-4) too."""
    import json

    from edgesmith_llamacpp.pretokenizer import identify

    for arch, name in (("qwen2.5", "qwen2"), ("qwen3", "qwen2"), ("phi4-mini", "gpt-4o"),
                       ("llama3.2", "llama-bpe"), ("smollm2", "smollm")):
        data = json.loads((arch_model(arch) / "tokenizer.json").read_text())
        assert identify(data) == name, arch
    nfkc = {**data, "normalizer": {"type": "NFKC"}}
    qwen = json.loads((arch_model("qwen2.5") / "tokenizer.json").read_text())
    assert identify({**qwen, "normalizer": {"type": "NFKC"}}) is None  # only the normalizer the family declares
    assert identify({**nfkc, "normalizer": {"type": "NFC"}}) is None  # and only for that family


def test_phi3_gguf_gets_a_name_llama_cpp_reads_its_tokens_by(arch_model, tmp_path):
    """llama.cpp restores Phi-3's rstrip chat tokens only for names with "phi3" or "phi-3".
    The converter names a GGUF after the directory: a hub snapshot's commit hash, or for a
    folder called Phi-3.5-mini-instruct "Phi 3.5 Mini Instruct", neither of which matches."""
    import shutil

    from edgesmith_llamacpp._convert_worker import model_name_for_llama_cpp

    src = arch_model("phi3.5")
    assert src.name == "checkpoint"
    assert model_name_for_llama_cpp(src, "Phi3ForCausalLM") == "Phi-3 Checkpoint"
    named = shutil.copytree(src, tmp_path / "Phi-3.5-mini-instruct")
    assert model_name_for_llama_cpp(named, "Phi3ForCausalLM") == "Phi-3 Phi 3.5 Mini Instruct"
    already = shutil.copytree(src, tmp_path / "phi3-tiny")
    assert model_name_for_llama_cpp(already, "Phi3ForCausalLM") is None
    assert model_name_for_llama_cpp(arch_model("phi4-mini"), "Phi3ForCausalLM") is None  # no rstrip tokens
