"""The architecture matrix of the test kit (edgesmith.testing.archs) and its
fidelity harness (edgesmith.testing.fidelity), held to transformers.

Without torch and transformers (``nox -s core``) only the kit's own promises
are checked: fast, small, deterministic checkpoints with the real configs'
keys and values, and the harness's verdicts. With them, each checkpoint
loads in transformers with exactly the config transformers 5 writes, gives
finite and peaked next-token distributions, its tokenizer files agree with
each other, and the harness passes the model against itself and fails it
against a copy with the RoPE base changed.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest

from edgesmith.testing.archs import ARCHITECTURES, FOLLOWS, arch_checkpoint
from edgesmith.testing.fidelity import MEAN_KL_MAX, TOP1_MIN, Fidelity, copy_with_config


def _config(path: Path) -> dict:
    return json.loads((path / "config.json").read_text())


def test_every_architecture_is_documented():
    assert set(FOLLOWS) == set(ARCHITECTURES)
    assert {"llama3.2", "qwen2.5", "qwen3", "gemma3", "phi3.5", "phi4-mini", "smollm2"} <= set(ARCHITECTURES)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_fast_small_and_deterministic(arch, tmp_path):
    t = time.perf_counter()
    a = arch_checkpoint(tmp_path / "a", arch)
    assert time.perf_counter() - t < 10
    b = arch_checkpoint(tmp_path / "b", arch)
    assert sum(f.stat().st_size for f in a.iterdir()) < 5 * 2**20

    def digest(p: Path) -> dict[str, str]:
        return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(p.iterdir())}

    assert digest(a) == digest(b)
    assert digest(arch_checkpoint(tmp_path / "c", arch, seed=1))["model.safetensors"] != digest(a)["model.safetensors"]


def test_unknown_architecture_is_refused(tmp_path):
    with pytest.raises(ValueError, match="choose one of"):
        arch_checkpoint(tmp_path, "gpt-5")


def test_configs_carry_the_real_settings(arch_model):
    """The traits each family is known by, as its published config.json has them."""
    from safetensors.numpy import load_file

    llama = _config(arch_model("llama3.2"))
    assert llama["rope_parameters"] == {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                                        "original_max_position_embeddings": 8192, "rope_theta": 500000.0,
                                        "rope_type": "llama3"}
    assert llama["tie_word_embeddings"] and "rope_theta" not in llama and "rope_scaling" not in llama

    qwen = arch_model("qwen2.5")
    assert _config(qwen)["rope_parameters"]["rope_theta"] == 1e6 and _config(qwen)["tie_word_embeddings"]
    assert "model.layers.0.self_attn.q_proj.bias" in load_file(str(qwen / "model.safetensors"))
    assert _config(qwen)["vocab_size"] > len(json.loads((qwen / "tokenizer.json").read_text())["model"]["vocab"])

    q3 = _config(arch_model("qwen3"))
    assert q3["head_dim"] * q3["num_attention_heads"] != q3["hidden_size"]
    assert "model.layers.0.self_attn.q_norm.weight" in load_file(str(arch_model("qwen3") / "model.safetensors"))

    g = _config(arch_model("gemma3"))
    assert g["model_type"] == "gemma3_text" and g["architectures"] == ["Gemma3ForCausalLM"]
    assert g["layer_types"] == ["sliding_attention"] * 5 + ["full_attention"]
    assert g["rope_parameters"] == {"full_attention": {"rope_theta": 1e6, "rope_type": "default"},
                                    "sliding_attention": {"rope_theta": 10000.0, "rope_type": "default"}}
    assert g["query_pre_attn_scalar"] == g["head_dim"] and g["final_logit_softcapping"] is None
    tok = json.loads((arch_model("gemma3") / "tokenizer.json").read_text())
    beyond = {t["content"]: t["id"] for t in tok["added_tokens"] if t["id"] >= g["vocab_size"]}
    assert beyond == {"<image_soft_token>": g["vocab_size"]}  # as gemma-3-1b: id 262144 of 262144 rows
    assert (arch_model("gemma3") / "tokenizer.model").is_file()
    g4 = _config(arch_model("gemma3-4b-text"))  # the 4B's text model: linear scaling, rows past the tokenizer
    assert g4["rope_parameters"]["full_attention"] == {"factor": 8.0, "rope_theta": 1e6, "rope_type": "linear"}
    assert g4["rope_parameters"]["sliding_attention"] == g["rope_parameters"]["sliding_attention"]
    tok4 = json.loads((arch_model("gemma3-4b-text") / "tokenizer.json").read_text())
    assert max(t["id"] for t in tok4["added_tokens"]) < g4["vocab_size"]

    phi = arch_model("phi3.5")
    p = _config(phi)["rope_parameters"]
    assert p["rope_type"] == "longrope" and p["short_factor"] != p["long_factor"]
    assert len(p["short_factor"]) == _config(phi)["hidden_size"] // _config(phi)["num_attention_heads"] // 2
    assert "model.layers.0.self_attn.qkv_proj.weight" in load_file(str(phi / "model.safetensors"))
    assert "model.layers.0.mlp.gate_up_proj.weight" in load_file(str(phi / "model.safetensors"))
    p4 = _config(arch_model("phi4-mini"))
    assert p4["partial_rotary_factor"] == 0.75 and p4["tie_word_embeddings"]
    hd = p4["hidden_size"] // p4["num_attention_heads"]
    assert len(p4["rope_parameters"]["short_factor"]) == int(hd * 0.75) // 2


def _fidelity(**kw) -> Fidelity:
    base = dict(label="x", positions=10, top1=1.0, mean_kl=0.0, max_kl=0.0, max_kl_at=0, ref_top1_prob=0.9,
                vocab_ref=10, vocab_cand=10, greedy_matched=20, greedy_total=20, greedy_ref=(), greedy_cand=(),
                tokenizer_equal=True)
    return Fidelity(**{**base, **kw})


def test_fidelity_verdicts():
    assert _fidelity().failures() == []
    assert _fidelity(top1=TOP1_MIN, mean_kl=MEAN_KL_MAX).failures() == []
    out = _fidelity(top1=0.5, mean_kl=2.0, max_kl=9.0, greedy_matched=3, tokenizer_equal=False,
                    tokenizer_mismatch="at token 4", vocab_cand=11).failures()
    assert len(out) == 5 and out[1].startswith("top-1 agreement 0.5000 < 0.99")
    assert _fidelity(mean_kl=float("nan")).failures()  # NaN is never within bounds
    assert _fidelity(greedy_matched=3).failures(greedy=False) == []


def test_copy_with_config_scales_every_rope_base(arch_model, tmp_path):
    broken = copy_with_config(arch_model("gemma3"), tmp_path / "b", rope_theta=0.5)
    params = _config(broken)["rope_parameters"]
    assert params["full_attention"]["rope_theta"] == 5e5 and params["sliding_attention"]["rope_theta"] == 5000.0


# -- with transformers ----------------------------------------------------------


@pytest.fixture(scope="module")
def hf():
    pytest.importorskip("torch")
    return pytest.importorskip("transformers")


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_transformers_loads_it_as_written(arch, arch_model, hf, tmp_path):
    import numpy as np
    import torch

    path = arch_model(arch)
    hf.AutoConfig.from_pretrained(path).save_pretrained(tmp_path)
    assert _config(tmp_path) == _config(path), "config.json is not what transformers 5 writes"
    tok = hf.AutoTokenizer.from_pretrained(path)
    model = hf.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    assert type(model).__name__ == _config(path)["architectures"][0]
    from edgesmith.testing.fidelity import scored_ids

    ids = scored_ids(tok)
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].double()
    assert torch.isfinite(logits).all()
    top = torch.softmax(logits, -1).max(-1).values.numpy()
    assert np.median(top) > 0.6 and np.mean(top > 0.5) > 0.6, "next-token distributions are not peaked"
    chat = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    marker = {"smollm2": "<|im_start|>assistant\n", "llama3.2": "<|start_header_id|>assistant<|end_header_id|>",
              "qwen2.5": "<|im_start|>assistant\n", "qwen3": "<|im_start|>assistant\n",
              "gemma3": "<start_of_turn>model\n", "gemma3-4b-text": "<start_of_turn>model\n",
              "phi3.5": "<|assistant|>\n", "phi4-mini": "<|assistant|>"}
    assert chat.rstrip("\n").endswith(marker[arch].rstrip("\n"))


@pytest.mark.parametrize("arch", ["gemma3", "gemma3-4b-text", "phi3.5"])
def test_sentencepiece_model_tokenizes_as_tokenizer_json(arch, arch_model):
    spm = pytest.importorskip("sentencepiece")
    from tokenizers import Tokenizer

    from edgesmith.testing.fidelity import TOKENIZER_TEXT
    from edgesmith.testing.tiny import corpus_text

    path = arch_model(arch)
    sp = spm.SentencePieceProcessor(model_file=str(path / "tokenizer.model"))
    tok = Tokenizer.from_file(str(path / "tokenizer.json"))
    for text in (TOKENIZER_TEXT, corpus_text()):
        assert sp.encode(text) == tok.encode(text, add_special_tokens=False).ids


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_harness_passes_the_model_against_itself(arch, arch_model, hf):
    from edgesmith.testing.fidelity import TransformersRunner, compare

    path = arch_model(arch)
    with TransformersRunner(path) as runner:
        result = compare(path, runner, label=arch)
    assert result.failures() == []
    assert result.top1 == 1.0 and abs(result.mean_kl) < 1e-6 and result.greedy_total >= 16
    assert result.positions == 256 and result.chat_equal


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_harness_fails_a_copy_with_another_rope_base(arch, arch_model, hf, tmp_path):
    """The deliberately broken candidate: the same weights with every RoPE base halved."""
    from edgesmith.testing.fidelity import TransformersRunner, compare

    path = arch_model(arch)
    broken = copy_with_config(path, tmp_path / "checkpoint", rope_theta=0.5)
    with TransformersRunner(broken) as runner:
        result = compare(path, runner, label=f"{arch} with rope_theta x 0.5")
    failures = result.failures()
    assert result.top1 < 0.5 and result.mean_kl > 1.0, result.row()
    assert any(f.startswith("top-1 agreement") for f in failures)
    assert any(f.startswith("mean KL") for f in failures)
    assert result.tokenizer_equal  # only the model is broken
