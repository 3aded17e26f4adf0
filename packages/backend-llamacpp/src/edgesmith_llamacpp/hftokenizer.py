"""Hugging Face tokenizer files rebuilt from a GGUF's tokenizer metadata.

transformers' own GGUF tokenizer import picks the converter by *model*
architecture, so a byte-level BPE vocabulary (``tokenizer.ggml.model ==
"gpt2"``) inside a llama-architecture GGUF (SmolLM2, every Llama-3) comes out
as a SentencePiece-style tokenizer: byte fallback on, a "▁"-replacing decoder,
the pre-tokenizer reduced to GPT-2's, and the end-of-sequence token set to the
beginning-of-sequence one. llama.cpp's converter then reads that
tokenizer.json as a SentencePiece vocabulary and writes a GGUF whose
byte-level tokens llama.cpp's SentencePiece tokenizer cannot map to bytes:
loading it aborts inside llama.cpp.

For byte-level BPE we therefore build the tokenizer here: the vocabulary,
merges and special tokens as stored, and the splitting rules llama.cpp uses
for ``tokenizer.ggml.pre`` written as the equivalent `tokenizers` pipeline.

SentencePiece vocabularies (``"llama"``) are rebuilt here too. transformers'
GGUF converters get them wrong: Gemma's comes out as a Unigram model (llama.cpp
and SentencePiece merge by piece score, as BPE), Llama/Phi-3's loses its byte
fallback, its unknown token and the "▁" space handling, so both split text
differently from the source tokenizer. We write what transformers' own
SentencePiece conversion writes: a BPE over the pieces with merges ordered by
piece score, byte fallback, "▁" for spaces (with the dummy prefix when the GGUF
says so) and the control/user-defined pieces as added tokens. We also write a
``tokenizer.model`` so that llama.cpp's converter reads the vocabulary with its
scores again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .pretokenizer import _GPT2, _LLAMA3, _QWEN2, NORMALIZE_FIRST

# GGUF token types (llama.cpp's llama_token_type; SentencePiece uses the same numbers).
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

# llama.cpp's split regexes per pre-tokenizer family (llama-vocab.cpp, llm_tokenizer_bpe).
# llama.cpp applies them one after another, keeping the text between matches as
# pieces too: the same as a sequence of `Split(..., "isolated")` steps. Where a
# family comes from a published tokenizer.json we keep that file's spelling.
_GPT2_LLAMACPP = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
_QWEN35 = (r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+"
           r"|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_GPT4O = (r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+"
          r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?"
          r"|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*"
          r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?"
          r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_TEKKEN = (r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+"
           r"|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*"
           r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_DEEPSEEK3 = (r"\p{N}{1,3}", r"[一-龥぀-ゟ゠-ヿ]+",
              r"[!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+"
              r"| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_BLOOM = r" ?[^(\s|.,!?…。，、।۔،)]+"

#: family -> (regexes, ignore_merges, add_bos default); "gpt2" and "digits" get their usual HF forms
_FAMILIES: dict[str, tuple[tuple[str, ...], bool, bool]] = {
    "default": ((r"[\p{P}\$\+<=>\^~\|]+", _GPT2_LLAMACPP, r"\p{N}+", r"[0-9][0-9][0-9]"), False, False),
    "gpt2": ((_GPT2,), False, False),
    "digits": ((r"\p{N}", _GPT2_LLAMACPP), False, False),
    "llama3": ((_LLAMA3,), True, True),
    "llama3-merges": ((_LLAMA3,), False, False),
    "glm4": ((_LLAMA3,), True, False),
    "qwen2": ((_QWEN2,), False, False),
    "qwen35": ((_QWEN35,), False, False),
    "gpt4o": ((_GPT4O,), False, False),
    "tekken": ((_TEKKEN,), True, True),
    "deepseek3": (_DEEPSEEK3, False, False),
    "falcon": ((r"[\p{P}\$\+<=>\^~\|`]+", _GPT2_LLAMACPP, r"[0-9][0-9][0-9]"), False, False),
    "bloom": ((_BLOOM,), False, False),
    "viking": ((_BLOOM, r"\p{N}"), False, False),
}

_PRE_NAMES = {
    "default": ("default",),
    "gpt2": ("gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de", "a.x-4.0",
             "mellum", "modern-bert", "jina-v1-en", "jina-v2-code", "roberta-bpe", "exaone4", "mpt", "olmo",
             "jais", "trillion", "granite-docling"),
    "digits": ("smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b", "mellum2"),
    "llama3": ("llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2",
               "jina-v5-nano"),
    "llama3-merges": ("dbrx", "smaug-bpe", "chatglm-bpe"),
    "glm4": ("glm4", "glm5"),
    "qwen2": ("qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "megrez", "stablelm2", "hunyuan", "solar-open",
              "grok-2"),
    "qwen35": ("qwen35",),
    "gpt4o": ("gpt-4o", "llama4", "kanana2", "talkie"),
    "tekken": ("tekken",),
    "deepseek3": ("deepseek-v3", "hunyuan-dense", "joyai-llm", "hy_v4"),
    "falcon": ("falcon",),
    "bloom": ("bloom", "poro-chat", "gpt3-finnish"),
    "viking": ("viking",),
}
_FAMILY_OF = {name: fam for fam, names in _PRE_NAMES.items() for name in names}


def family(pre: str | None) -> str | None:
    """The splitting family llama.cpp uses for ``tokenizer.ggml.pre`` (None: not reproduced here)."""
    return _FAMILY_OF.get(pre or "default")


def _pre_tokenizer(fam: str) -> Any:
    from tokenizers import Regex, pre_tokenizers

    if fam == "gpt2":
        return pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    if fam == "digits":  # the form SmolLM/StarCoder tokenizers publish
        return pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
        ])
    regexes = _FAMILIES[fam][0]
    return pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(r), behavior="isolated", invert=False) for r in regexes]
        + [pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)]
    )


def _token(tokens: list[str], idx: Any) -> str | None:
    return tokens[idx] if isinstance(idx, int) and 0 <= idx < len(tokens) else None


def special_tokens(meta: dict[str, Any]) -> dict[str, str | None]:
    """bos/eos/unk/pad token strings from the GGUF ids (None where the GGUF has none)."""
    tokens = meta["tokenizer.ggml.tokens"]
    unk = meta.get("tokenizer.ggml.unknown_token_id")
    if unk is None:  # llama.cpp's converter leaves the id out when the type marks it
        types = meta.get("tokenizer.ggml.token_type") or []
        unk = next((i for i, ty in enumerate(types) if ty == UNKNOWN), None)
    return {
        "bos_token": _token(tokens, meta.get("tokenizer.ggml.bos_token_id")),
        "eos_token": _token(tokens, meta.get("tokenizer.ggml.eos_token_id")),
        "unk_token": _token(tokens, unk),
        "pad_token": _token(tokens, meta.get("tokenizer.ggml.padding_token_id")),
    }


def _bpe_backend(meta: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """A `tokenizers.Tokenizer` for a byte-level BPE GGUF vocabulary, and facts about it."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, processors

    tokens: list[str] = meta["tokenizer.ggml.tokens"]
    types: list[int] = meta.get("tokenizer.ggml.token_type") or [NORMAL] * len(tokens)
    merges = [tuple(m.split(" ", 1)) for m in meta.get("tokenizer.ggml.merges") or []]
    pre = meta.get("tokenizer.ggml.pre")
    fam = family(pre)
    facts: dict[str, Any] = {"pre_tokenizer": pre or "default"}
    if fam is None:
        facts["pre_tokenizer_note"] = (f"llama.cpp pre-tokenizer {pre!r} is not reproduced; "
                                       f"GPT-2 splitting is used")
        fam = "gpt2"
    _, ignore_merges, add_bos_default = _FAMILIES[fam]
    vocab: dict[str, int] = {}
    for i, t in enumerate(tokens):
        vocab.setdefault(t, i)  # a repeated string (rare padding entries) keeps its first id
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False,
                               ignore_merges=ignore_merges))
    if pre in NORMALIZE_FIRST:  # as the source tokenizer.json had it (Qwen2's NFC)
        from tokenizers import normalizers

        tok.normalizer = getattr(normalizers, NORMALIZE_FIRST[pre])()
        facts["normalizer"] = NORMALIZE_FIRST[pre]
    tok.pre_tokenizer = _pre_tokenizer(fam)
    tok.decoder = decoders.ByteLevel()
    added = [AddedToken(tokens[i], special=types[i] in (CONTROL, UNKNOWN), normalized=False)
             for i in range(len(tokens)) if types[i] in (CONTROL, UNKNOWN, USER_DEFINED)
             and vocab.get(tokens[i]) == i]
    tok.add_tokens(added)
    add_bos = bool(meta.get("tokenizer.ggml.add_bos_token", add_bos_default))
    add_eos = bool(meta.get("tokenizer.ggml.add_eos_token", False))
    specials = special_tokens(meta)
    tok.post_processor = _post_processor(processors, specials, vocab, add_bos, add_eos)
    facts.update(add_bos_token=add_bos, add_eos_token=add_eos)
    return tok, facts


def _post_processor(processors: Any, specials: dict[str, str | None], vocab: dict[str, int],
                    add_bos: bool, add_eos: bool) -> Any:
    bos = specials["bos_token"] if add_bos else None
    eos = specials["eos_token"] if add_eos else None
    if bos is None and eos is None:
        return processors.ByteLevel(trim_offsets=False)
    single = ([f"{bos}:0"] if bos else []) + ["$A:0"] + ([f"{eos}:0"] if eos else [])
    pair = single + ([f"{bos}:1"] if bos else []) + ["$B:1"] + ([f"{eos}:1"] if eos else [])
    used = {t for t in (bos, eos) if t}
    return processors.TemplateProcessing(single=single, pair=pair,
                                         special_tokens=[(t, vocab[t]) for t in used])


def write(meta: dict[str, Any], architecture: str, output: Path) -> dict[str, Any]:
    """Write tokenizer.json, tokenizer_config.json (special tokens, chat template) and, for
    SentencePiece vocabularies, tokenizer.model into ``output``; return facts for the manifest."""
    from transformers import PreTrainedTokenizerFast

    model = meta.get("tokenizer.ggml.model")
    specials = special_tokens(meta)
    facts: dict[str, Any] = {"tokenizer_model": model}
    if model == "gpt2":
        backend, more = _bpe_backend(meta)
        facts.update(more)
        add_bos, add_eos = more["add_bos_token"], more["add_eos_token"]
    else:
        if model == "llama":
            backend = _spm_backend(meta)
        else:
            backend = _transformers_backend(meta, architecture)
        add_bos = bool(meta.get("tokenizer.ggml.add_bos_token", model == "llama"))
        add_eos = bool(meta.get("tokenizer.ggml.add_eos_token", False))
        facts.update(add_bos_token=add_bos, add_eos_token=add_eos)
        if add_bos or add_eos:  # the generic tokenizer class adds them only through the pipeline
            from tokenizers import processors

            backend.post_processor = _post_processor(processors, specials, backend.get_vocab(),
                                                     add_bos, add_eos)
    template = meta.get("tokenizer.chat_template")
    ctx_len = meta.get(f"{architecture}.context_length")
    kwargs: dict[str, Any] = {k: v for k, v in specials.items() if v is not None}
    if ctx_len:
        kwargs["model_max_length"] = int(ctx_len)
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, clean_up_tokenization_spaces=False, **kwargs)
    if template:
        tok.chat_template = template
    tok.save_pretrained(str(output))
    _finish_config(output, tokenizer_class="PreTrainedTokenizerFast", template=template,
                   add_bos=add_bos, add_eos=add_eos, specials=specials)
    if model == "llama" and _write_sentencepiece(meta, output):
        facts["tokenizer_model_file"] = "tokenizer.model"
    return facts


def _rstrip_by_name(meta: dict[str, Any]) -> set[str]:
    """Tokens llama.cpp strips the whitespace after, set by model name (llama-vocab.cpp:
    for a name with "phi-3"/"phi3", every control token but <unk>, <s>, <|endoftext|>;
    and </s>). Phi-3's own tokenizer.json has these flags; the GGUF keeps only the name."""
    name = str(meta.get("general.name") or "").lower()
    if "phi-3" not in name and "phi3" not in name:
        return set()
    tokens, types = meta["tokenizer.ggml.tokens"], meta.get("tokenizer.ggml.token_type") or []
    out = {t for t, ty in zip(tokens, types, strict=False) if ty == CONTROL} | {"</s>"}
    return out - {"<unk>", "<s>", "<|endoftext|>"}


def _spm_backend(meta: dict[str, Any]) -> Any:
    """A `tokenizers.Tokenizer` for a SentencePiece (``"llama"``) GGUF vocabulary that splits
    text as llama.cpp (and SentencePiece) do: merges by piece score."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers

    tokens: list[str] = meta["tokenizer.ggml.tokens"]
    types: list[int] = meta.get("tokenizer.ggml.token_type") or [NORMAL] * len(tokens)
    scores: list[float] = meta.get("tokenizer.ggml.scores") or [0.0] * len(tokens)
    vocab: dict[str, int] = {}
    for i, t in enumerate(tokens):
        vocab.setdefault(t, i)
    normal = {t: float(scores[i]) for t, i in vocab.items() if types[i] == NORMAL}
    merges: list[tuple[str, str, float]] = []
    for piece, score in normal.items():  # as transformers' SentencePieceExtractor orders them
        local = [(piece[:k], piece[k:], score) for k in range(1, len(piece))
                 if piece[:k] in normal and piece[k:] in normal]
        merges += sorted(local, key=lambda m: (vocab[m[0]], vocab[m[1]]))
    merges.sort(key=lambda m: m[2], reverse=True)
    unk = next((t for t, i in vocab.items() if types[i] == UNKNOWN), None)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[(a, b) for a, b, _ in merges], unk_token=unk,
                               fuse_unk=True, byte_fallback=any(ty == BYTE for ty in types)))
    prefix = bool(meta.get("tokenizer.ggml.add_space_prefix", True))
    tok.normalizer = normalizers.Sequence(([normalizers.Prepend("\u2581")] if prefix else [])
                                          + [normalizers.Replace(" ", "\u2581")])
    steps = [decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()]
    if prefix:
        steps.append(decoders.Strip(" ", 1, 0))
    tok.decoder = decoders.Sequence(steps)
    rstrip = _rstrip_by_name(meta)
    tok.add_tokens([AddedToken(t, special=types[i] in (CONTROL, UNKNOWN), normalized=False, rstrip=t in rstrip)
                    for t, i in vocab.items() if types[i] in (CONTROL, UNKNOWN, USER_DEFINED)])
    return tok


_HF_MODEL_TYPE = {"gemma3": "gemma3_text", "qwen2moe": "qwen2_moe", "qwen3moe": "qwen3_moe",
                  "minimax-m2": "minimax_m2"}
_SPM_CONVERTERS = {"llama", "phi3", "gemma2", "gemma3_text", "deci", "decilm"}


def _transformers_backend(meta: dict[str, Any], architecture: str) -> Any:
    """transformers' GGUF tokenizer converter, fed from metadata we already read."""
    from transformers.integrations.ggml import GGUF_TO_FAST_CONVERTERS, convert_gguf_tokenizer

    from edgesmith.errors import UserError

    names = {"tokenizer.ggml.model": "tokenizer_type", "tokenizer.ggml.tokens": "tokens",
             "tokenizer.ggml.scores": "scores", "tokenizer.ggml.token_type": "token_type",
             "tokenizer.ggml.merges": "merges", "tokenizer.ggml.bos_token_id": "bos_token_id",
             "tokenizer.ggml.eos_token_id": "eos_token_id", "tokenizer.ggml.unknown_token_id": "unk_token_id",
             "tokenizer.ggml.padding_token_id": "pad_token_id",
             "tokenizer.ggml.add_space_prefix": "add_prefix_space"}
    tokenizer_dict = {hf: meta[key] for key, hf in names.items() if key in meta}
    # transformers' converters are keyed by its model_type. A SentencePiece vocabulary keeps the
    # architecture's own SentencePiece converter (Phi-3 and Gemma tune special tokens and spaces)
    # and is otherwise converted as Llama's.
    key: str | None = _HF_MODEL_TYPE.get(architecture, architecture)
    if key not in GGUF_TO_FAST_CONVERTERS:
        key = None
    if meta.get("tokenizer.ggml.model") == "llama" and key not in _SPM_CONVERTERS:
        key = "llama"
    if key is None:
        raise UserError(f"the GGUF tokenizer ({meta.get('tokenizer.ggml.model')!r} in a {architecture} "
                        f"model) cannot be rebuilt as a Hugging Face tokenizer; supported: byte-level BPE "
                        f"and SentencePiece vocabularies")
    backend, _ = convert_gguf_tokenizer(key, tokenizer_dict)
    # transformers marks only control tokens; llama.cpp also keeps user-defined ones whole.
    from tokenizers import AddedToken

    tokens, types = meta["tokenizer.ggml.tokens"], meta.get("tokenizer.ggml.token_type") or []
    backend.add_tokens([AddedToken(tokens[i], special=False, normalized=False)
                        for i, ty in enumerate(types) if ty == USER_DEFINED])
    return backend


def _finish_config(output: Path, *, tokenizer_class: str, template: str | None, add_bos: bool,
                   add_eos: bool, specials: dict[str, str | None]) -> None:
    """Settle tokenizer_config.json for readers other than transformers 5 (mlx-lm, ORT GenAI,
    older transformers): the portable class name, the template inline, explicit flags."""
    path = output / "tokenizer_config.json"
    cfg = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    for k in ("backend", "is_local", "local_files_only", "name_or_path", "_commit_hash"):
        cfg.pop(k, None)
    cfg["tokenizer_class"] = tokenizer_class
    cfg["add_bos_token"] = add_bos
    cfg["add_eos_token"] = add_eos
    for k, v in specials.items():
        if v is None:
            cfg.pop(k, None)
        else:
            cfg[k] = v
    if template:
        cfg["chat_template"] = template
    path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (output / "special_tokens_map.json").write_text(
        json.dumps({k: v for k, v in specials.items() if v is not None}, indent=2, ensure_ascii=False) + "\n",
        encoding="utf-8")


def _write_sentencepiece(meta: dict[str, Any], output: Path) -> bool:
    """A SentencePiece model file holding the GGUF's pieces, scores and types."""
    try:
        from sentencepiece import sentencepiece_model_pb2 as pb
    except ImportError:
        return False
    tokens = meta["tokenizer.ggml.tokens"]
    scores = meta.get("tokenizer.ggml.scores") or [0.0] * len(tokens)
    types = meta.get("tokenizer.ggml.token_type") or [NORMAL] * len(tokens)
    m = pb.ModelProto()
    for t, s, ty in zip(tokens, scores, types, strict=False):
        piece = m.pieces.add()
        piece.piece, piece.score = t, float(s)
        piece.type = ty if ty in (NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE) else NORMAL
    spec = m.trainer_spec
    spec.model_type = pb.TrainerSpec.BPE
    spec.vocab_size = len(tokens)
    spec.byte_fallback = any(ty == BYTE for ty in types)
    for field_name, key in (("unk_id", "unknown_token_id"), ("bos_id", "bos_token_id"),
                            ("eos_id", "eos_token_id"), ("pad_id", "padding_token_id")):
        v = meta.get(f"tokenizer.ggml.{key}")
        setattr(spec, field_name, int(v) if isinstance(v, int) and 0 <= v < len(tokens) else -1)
    norm = m.normalizer_spec
    norm.name = "identity"
    norm.add_dummy_prefix = bool(meta.get("tokenizer.ggml.add_space_prefix", True))
    norm.remove_extra_whitespaces = bool(meta.get("tokenizer.ggml.remove_extra_whitespaces", False))
    norm.escape_whitespaces = True
    (output / "tokenizer.model").write_bytes(m.SerializeToString())
    return True
