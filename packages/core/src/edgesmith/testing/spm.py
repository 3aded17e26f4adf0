"""SentencePiece-style BPE vocabularies for the test kit, without the sentencepiece library.

Gemma and Llama 2 / Phi-3 ship a SentencePiece model (``tokenizer.model``)
next to a ``tokenizer.json`` that transformers derived from it, and some
converters (llama.cpp's for Gemma 3 and Phi-3) read only the former. Here a
BPE is trained with the tokenizers library, then written both ways:

- :func:`hf_tokenizer`: the ``tokenizer.json`` transformers' own converter
  would make (``▁`` for spaces, byte fallback, merges derived from the piece
  scores as transformers' ``SentencePieceExtractor`` derives them);
- :func:`model_proto`: the serialized ``ModelProto`` (a few protobuf fields
  written by hand), which ``sentencepiece.SentencePieceProcessor`` loads and
  which tokenizes every text as the ``tokenizer.json`` does.

Words are learned with ``▁`` only at their start and digits alone, so no
piece spans a word boundary; SentencePiece's merge order (highest-scoring
piece first) and transformers' (lowest merge rank first) then agree.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from typing import Any

from .tiny import corpus_lines

#: SentencePiece piece types (``ModelProto.SentencePiece.Type``).
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
SPACE = "\u2581"

#: (piece, score, type)
Piece = tuple[str, float, int]


def train(learned: int, *, leading: Sequence[tuple[str, int]], dummy_prefix: bool) -> list[Piece]:
    """The pieces of a SentencePiece BPE model: ``leading`` (special pieces, with
    their types) first, the 256 byte pieces, then about ``learned`` pieces learned
    from the kit's corpus (merged pieces by merge order, then single characters)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.normalizer = _normalizer(dummy_prefix)
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(SPACE, behavior="merged_with_next"),
        pre_tokenizers.Digits(individual_digits=True),
    ])
    tok.train_from_iterator(corpus_lines(), trainers.BpeTrainer(
        vocab_size=learned, show_progress=False, limit_alphabet=120))
    model = json.loads(tok.to_str())["model"]
    merged = {"".join(m) if isinstance(m, list) else m.replace(" ", "") for m in model["merges"]}
    order = sorted(model["vocab"], key=model["vocab"].get)
    pieces: list[Piece] = [(p, 0.0, t) for p, t in leading]
    pieces += [(f"<0x{b:02X}>", 0.0, BYTE) for b in range(256)]
    merges = [p for p in order if p in merged]
    chars = [p for p in order if p not in merged]
    pieces += [(p, -float(n), NORMAL) for n, p in enumerate(merges)]
    pieces += [(p, -float(len(merges) + n), NORMAL) for n, p in enumerate(chars)]
    return pieces


def _normalizer(dummy_prefix: bool) -> Any:
    from tokenizers import normalizers

    steps = [normalizers.Prepend(SPACE)] if dummy_prefix else []
    return normalizers.Sequence([*steps, normalizers.Replace(" ", SPACE)])


def hf_tokenizer(pieces: Sequence[Piece], *, dummy_prefix: bool) -> Any:
    """The ``tokenizer.json`` of ``pieces`` as transformers converts a SentencePiece
    BPE model: Gemma's with ``dummy_prefix=False``, Llama 2's with ``True``. Control
    and unknown pieces are added tokens (matched in text, never normalized)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models

    vocab = {p: n for n, (p, _, _) in enumerate(pieces)}
    scores = {p: s for p, s, t in pieces if t == NORMAL}
    merges: list[tuple[str, str, float]] = []
    for piece, score in scores.items():
        local = [(piece[:k], piece[k:], score) for k in range(1, len(piece))
                 if piece[:k] in scores and piece[k:] in scores]
        merges += sorted(local, key=lambda m: (vocab[m[0]], vocab[m[1]]))
    merges.sort(key=lambda m: m[2], reverse=True)
    unk = next(p for p, _, t in pieces if t == UNKNOWN)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[(a, b) for a, b, _ in merges], unk_token=unk,
                               fuse_unk=True, byte_fallback=True))
    tok.normalizer = _normalizer(dummy_prefix)
    steps = [decoders.Replace(SPACE, " "), decoders.ByteFallback(), decoders.Fuse()]
    if dummy_prefix:
        steps.append(decoders.Strip(" ", 1, 0))
    tok.decoder = decoders.Sequence(steps)
    tok.add_special_tokens([AddedToken(p, special=True, normalized=False)
                            for p, _, t in pieces if t in (UNKNOWN, CONTROL)])
    return tok


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative int32s are ten-byte varints
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _int(field: int, n: int) -> bytes:
    return _varint(field << 3) + _varint(n)


def _bytes(field: int, data: bytes | str) -> bytes:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return _varint(field << 3 | 2) + _varint(len(raw)) + raw


def _float(field: int, x: float) -> bytes:
    return _varint(field << 3 | 5) + struct.pack("<f", x)


def model_proto(pieces: Sequence[Piece], *, dummy_prefix: bool, unk: int, bos: int, eos: int,
                pad: int = -1) -> bytes:
    """A serialized SentencePiece ``ModelProto`` of a byte-fallback BPE over ``pieces``
    (the ``tokenizer.model`` file); the ids name the special pieces."""
    out = b"".join(_bytes(1, _bytes(1, p) + _float(2, s) + _int(3, t)) for p, s, t in pieces)
    trainer = (_int(3, 2)  # model_type: BPE
               + _int(4, len(pieces)) + _int(25, 1)  # vocab_size, split_digits
               + _int(35, 1)  # byte_fallback
               + _int(40, unk) + _int(41, bos) + _int(42, eos) + _int(43, pad))
    normalizer = (_bytes(1, "identity") + _int(3, int(dummy_prefix))
                  + _int(4, 0) + _int(5, 1))  # keep extra whitespace, escape spaces as ▁
    return out + _bytes(2, trainer) + _bytes(3, normalizer)
