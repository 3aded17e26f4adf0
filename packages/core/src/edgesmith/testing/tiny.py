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


#: The split rules of byte-level BPE families, as published in their tokenizer.json
#: (a ``Split`` step, then a regex-free ``ByteLevel``). GPT-2's is ``ByteLevel``'s own.
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
               r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
#: tiktoken's o200k_base (GPT-4o, Phi-4).
O200K_SPLIT = (r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
               r"(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+"
               r"[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}"
               r"| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")

#: Byte-level BPE pre-tokenization styles :func:`train_tokenizer` knows:
#: GPT-2 (the default), SmolLM2 (single digits, then GPT-2), Llama 3, Qwen2 (with
#: its NFC normalizer) and o200k (Phi-4).
BYTE_LEVEL_STYLES = ("gpt2", "smollm2", "llama3", "qwen2", "o200k")


def corpus_lines() -> list[str]:
    """The corpus' non-empty lines: what every tokenizer of the kit is trained on."""
    return [line for line in corpus_text().splitlines() if line.strip()]


def _byte_level_pipeline(style: str) -> tuple[Any, Any]:
    """(normalizer, pre_tokenizer) of a byte-level BPE ``style``, as the family declares them."""
    from tokenizers import Regex, normalizers, pre_tokenizers

    def split_then_bytes(regex: str) -> Any:
        return pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(regex), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
        ])

    if style == "gpt2":
        return None, pre_tokenizers.ByteLevel(add_prefix_space=False)
    if style == "smollm2":
        return None, pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
        ])
    if style == "llama3":
        return None, split_then_bytes(LLAMA3_SPLIT)
    if style == "qwen2":
        return normalizers.NFC(), split_then_bytes(QWEN2_SPLIT)
    if style == "o200k":
        return None, split_then_bytes(O200K_SPLIT)
    raise ValueError(f"unknown tokenizer style {style!r}; choose one of {', '.join(BYTE_LEVEL_STYLES)}")


def train_tokenizer(vocab_size: int = 384, *, style: str = "gpt2",
                    special_tokens: tuple[str, ...] | list[str] = SPECIAL_TOKENS) -> Any:
    """Train a byte-level BPE tokenizer on the kit's corpus.

    ``style`` picks the family's pre-tokenization (:data:`BYTE_LEVEL_STYLES`;
    GPT-2 by default). ``special_tokens`` get the first ids; pass none and add
    them afterwards (``Tokenizer.add_special_tokens``) to place them after the
    learned vocabulary, as Llama 3, Qwen2 and Phi-4 do.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    normalizer, pre = _byte_level_pipeline(style)
    if normalizer is not None:
        tok.normalizer = normalizer
    tok.pre_tokenizer = pre
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus_lines(), trainer)
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


def _small_init(std: float) -> Any:
    """The factory's own initialization: N(0, std) matrices and biases, norms of ones."""

    def init(role: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        if role.endswith("norm"):
            return np.ones(shape, dtype=np.float32)
        return (rng.standard_normal(shape) * std).astype(np.float32)

    return init


def decoder_tensors(cfg: dict[str, Any], rng: np.random.Generator, init: Any, *, fused: bool = False,
                    qkv_bias: bool = False, qk_norm: bool = False,
                    sandwich_norms: bool = False) -> dict[str, np.ndarray]:
    """The tensors of a Llama-layout decoder, named as transformers names them.

    ``init(role, shape, rng)`` makes each tensor; roles are ``embed``, ``lm_head``,
    ``final_norm``, ``input_norm``, ``post_attention_norm``, ``q``/``k``/``v``/``o``
    (and ``qkv``), ``q_bias``/``k_bias``/``v_bias``, ``q_norm``/``k_norm``,
    ``gate``/``up``/``down`` (and ``gate_up``), ``pre_feedforward_norm`` and
    ``post_feedforward_norm``. Variants: ``fused`` q/k/v and gate/up matrices
    (Phi-3), ``qkv_bias`` (Qwen2), per-head ``qk_norm`` (Qwen3, Gemma 3) and
    Gemma's ``sandwich_norms`` around attention and MLP. Tensors are made in a
    fixed order, so a seed gives the same checkpoint every time.
    """
    h, i, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    heads, kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim") or h // heads

    def make(role: str, *shape: int) -> np.ndarray:
        return init(role, shape, rng)

    t = {"model.embed_tokens.weight": make("embed", v, h), "model.norm.weight": make("final_norm", h)}
    if not cfg["tie_word_embeddings"]:
        t["lm_head.weight"] = make("lm_head", v, h)
    for n in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{n}."
        t[p + "input_layernorm.weight"] = make("input_norm", h)
        t[p + "post_attention_layernorm.weight"] = make("post_attention_norm", h)
        t[p + "self_attn.o_proj.weight"] = make("o", h, heads * hd)
        t[p + "mlp.down_proj.weight"] = make("down", h, i)
        if fused:
            t[p + "self_attn.qkv_proj.weight"] = make("qkv", heads * hd + 2 * kv * hd, h)
            t[p + "mlp.gate_up_proj.weight"] = make("gate_up", 2 * i, h)
        else:
            t[p + "self_attn.q_proj.weight"] = make("q", heads * hd, h)
            t[p + "self_attn.k_proj.weight"] = make("k", kv * hd, h)
            t[p + "self_attn.v_proj.weight"] = make("v", kv * hd, h)
            t[p + "mlp.gate_proj.weight"] = make("gate", i, h)
            t[p + "mlp.up_proj.weight"] = make("up", i, h)
        if qkv_bias:
            t[p + "self_attn.q_proj.bias"] = make("q_bias", heads * hd)
            t[p + "self_attn.k_proj.bias"] = make("k_bias", kv * hd)
            t[p + "self_attn.v_proj.bias"] = make("v_bias", kv * hd)
        if qk_norm:
            t[p + "self_attn.q_norm.weight"] = make("q_norm", hd)
            t[p + "self_attn.k_norm.weight"] = make("k_norm", hd)
        if sandwich_norms:
            t[p + "pre_feedforward_layernorm.weight"] = make("pre_feedforward_norm", h)
            t[p + "post_feedforward_layernorm.weight"] = make("post_feedforward_norm", h)
    return t


def _weights(arch: str, cfg: dict[str, Any], rng: np.random.Generator) -> dict[str, np.ndarray]:
    # head_dim follows hidden/heads here whatever the config says (as it always has).
    cfg = {**cfg, "head_dim": cfg["hidden_size"] // cfg["num_attention_heads"]}
    return decoder_tensors(cfg, rng, _small_init(cfg["initializer_range"]),
                           fused=arch == "phi3", qkv_bias=arch == "qwen2")


def write_checkpoint(dest: Path, config: dict[str, Any], tensors: dict[str, np.ndarray], tokenizer: Any,
                     tokenizer_config: dict[str, Any], special_tokens_map: dict[str, Any],
                     generation_config: dict[str, Any]) -> Path:
    """Write a checkpoint directory as transformers lays it out: safetensors
    weights, config.json, generation_config.json and the tokenizer files."""
    from safetensors.numpy import save_file

    def dump(name: str, data: dict[str, Any]) -> None:
        (dest / name).write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    dest.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(dest / "model.safetensors"), metadata={"format": "pt"})
    dump("config.json", config)
    dump("generation_config.json", generation_config)
    tokenizer.save(str(dest / "tokenizer.json"))
    dump("tokenizer_config.json", tokenizer_config)
    dump("special_tokens_map.json", special_tokens_map)
    return dest


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
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    tok = train_tokenizer(vocab_size)
    vocab = tok.get_vocab_size()
    cfg = _config(arch, vocab, hidden_size, intermediate_size, layers, heads, kv_heads)
    rng = np.random.default_rng(seed)
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
    special = {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}
    generation = {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}
    return write_checkpoint(Path(dest), cfg, _weights(arch, cfg, rng), tok, tok_cfg, special, generation)


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
