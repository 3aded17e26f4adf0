"""A factory for tiny but valid Hugging Face causal-LM checkpoints.

Weights are random (seeded) and written as safetensors with numpy, and the
tokenizer is a byte-level BPE trained on the spot on a small shipped corpus,
so a checkpoint appears in about a second without torch or a hub download.
Sizes are chosen so that group quantization (32/64/128) and llama.cpp
K-quants (blocks of 256) apply: hidden and intermediate sizes are multiples
of 256.
"""

from __future__ import annotations

import json
from collections import Counter
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

ARCHITECTURES = ("llama", "qwen2", "phi3")

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
# ChatML, as used by SmolLM2 and Qwen2: the template most small chat models ship.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def corpus_text() -> str:
    """The small English corpus the tokenizer is trained on."""
    return resources.files("edgesmith").joinpath("data/tiny_corpus.txt").read_text()


def train_tokenizer(vocab_size: int = 384) -> Any:
    """Train a byte-level BPE tokenizer (GPT-2 style pre-tokenization)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    lines = [line for line in corpus_text().splitlines() if line.strip()]
    tok.train_from_iterator(lines, trainer)
    return tok


def _config(arch: str, vocab: int, hidden: int, inter: int, layers: int, heads: int,
            kv_heads: int) -> dict[str, Any]:
    common = {
        "hidden_size": hidden,
        "intermediate_size": inter,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "max_position_embeddings": 2048,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "vocab_size": vocab,
        "hidden_act": "silu",
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 0,
        "initializer_range": 0.02,
        "torch_dtype": "float32",
        "use_cache": True,
    }
    if arch == "llama":
        return {"architectures": ["LlamaForCausalLM"], "model_type": "llama",
                "head_dim": hidden // heads, "attention_bias": False, "mlp_bias": False,
                "tie_word_embeddings": True, **common}
    if arch == "qwen2":
        return {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
                "tie_word_embeddings": True, "use_sliding_window": False,
                "sliding_window": None, "max_window_layers": layers, **common}
    if arch == "phi3":
        return {"architectures": ["Phi3ForCausalLM"], "model_type": "phi3",
                "tie_word_embeddings": False, "original_max_position_embeddings": 2048,
                "rope_scaling": None, "sliding_window": None, "attention_dropout": 0.0,
                "embd_pdrop": 0.0, "resid_pdrop": 0.0, **common}
    raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")


def _weights(arch: str, cfg: dict[str, Any], rng: np.random.Generator) -> dict[str, np.ndarray]:
    h, i, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    heads, kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = h // heads
    std = cfg["initializer_range"]

    def w(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * std).astype(np.float32)

    def ones(n: int) -> np.ndarray:
        return np.ones(n, dtype=np.float32)

    t = {"model.embed_tokens.weight": w(v, h), "model.norm.weight": ones(h)}
    if not cfg["tie_word_embeddings"]:
        t["lm_head.weight"] = w(v, h)
    for n in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{n}."
        t[p + "input_layernorm.weight"] = ones(h)
        t[p + "post_attention_layernorm.weight"] = ones(h)
        t[p + "self_attn.o_proj.weight"] = w(h, heads * hd)
        t[p + "mlp.down_proj.weight"] = w(h, i)
        if arch == "phi3":
            t[p + "self_attn.qkv_proj.weight"] = w(heads * hd + 2 * kv * hd, h)
            t[p + "mlp.gate_up_proj.weight"] = w(2 * i, h)
            continue
        t[p + "self_attn.q_proj.weight"] = w(heads * hd, h)
        t[p + "self_attn.k_proj.weight"] = w(kv * hd, h)
        t[p + "self_attn.v_proj.weight"] = w(kv * hd, h)
        t[p + "mlp.gate_proj.weight"] = w(i, h)
        t[p + "mlp.up_proj.weight"] = w(i, h)
        if arch == "qwen2":
            t[p + "self_attn.q_proj.bias"] = w(heads * hd)
            t[p + "self_attn.k_proj.bias"] = w(kv * hd)
            t[p + "self_attn.v_proj.bias"] = w(kv * hd)
    return t


def tiny_checkpoint(
    dest: str | Path,
    arch: str = "llama",
    *,
    hidden_size: int = 256,
    intermediate_size: int = 768,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    vocab_size: int = 384,
    seed: int = 0,
) -> Path:
    """Write a tiny random-weight checkpoint of ``arch`` to ``dest`` and return it.

    The result loads with ``transformers.AutoModelForCausalLM`` and
    ``AutoTokenizer``, has a chat template, and is a few MB. The vocabulary
    size differs from every layer width on purpose: converters that find the
    LM head by its width (ONNX Runtime GenAI's builder) mistake any layer of
    that width for it.
    """
    from safetensors.numpy import save_file

    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    tok = train_tokenizer(vocab_size)
    vocab = tok.get_vocab_size()
    cfg = _config(arch, vocab, hidden_size, intermediate_size, layers, heads, kv_heads)
    rng = np.random.default_rng(seed)
    save_file(_weights(arch, cfg, rng), str(dest / "model.safetensors"), metadata={"format": "pt"})
    (dest / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    (dest / "generation_config.json").write_text(
        json.dumps({"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}, indent=2) + "\n"
    )
    tok.save(str(dest / "tokenizer.json"))
    tok_cfg = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<|im_start|>",
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": None,
        "add_bos_token": False,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": 2048,
        "chat_template": CHAT_TEMPLATE,
    }
    (dest / "tokenizer_config.json").write_text(json.dumps(tok_cfg, indent=2) + "\n")
    (dest / "special_tokens_map.json").write_text(json.dumps({
        "bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
    }, indent=2) + "\n")
    return dest


def bigram_checkpoint(base: str | Path, dest: str | Path, text: str | None = None) -> Path:
    """Copy ``base`` with an output head that predicts each token's most frequent
    follower in ``text`` (default: the core's evaluation text).

    A random tiny model repeats one token under greedy decoding and its
    perplexity sits near the vocabulary size whatever the rounding; this "bigram
    model inside a transformer" writes varied text and predicts real text better
    than chance, so smoke tests, perplexity gaps and quantization effects show.
    """
    import shutil

    from safetensors.numpy import load_file, save_file
    from tokenizers import Tokenizer

    if text is None:
        from ..measure.text import load_text

        text = load_text(None)[0]
    base, dest = Path(base), Path(dest)
    shutil.copytree(base, dest)
    ids = Tokenizer.from_file(str(dest / "tokenizer.json")).encode(text, add_special_tokens=False).ids
    w = load_file(str(dest / "model.safetensors"))
    emb = w["model.embed_tokens.weight"]
    follower: dict[int, int] = {}
    used = {0, 1, 2}  # never predict the special tokens (end of sequence among them)
    for (a, b), _ in Counter(zip(ids, ids[1:], strict=False)).most_common():
        if a not in follower and b not in used and a != b:
            follower[a] = b
            used.add(b)
    head = np.random.default_rng(1).standard_normal(emb.shape).astype(np.float32) * 0.002
    for a, b in follower.items():
        head[b] = emb[a]
    w["lm_head.weight"] = head
    save_file(w, str(dest / "model.safetensors"), metadata={"format": "pt"})
    cfg = json.loads((dest / "config.json").read_text())
    cfg["tie_word_embeddings"] = False
    (dest / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    return dest
