"""A tiny BERT sentence encoder for tests: random (seeded) weights made with
transformers, a WordPiece tokenizer trained on the spot on the kit's corpus,
safetensors weights and a sentence-transformers pooling configuration.

Needs torch and transformers (a backend environment has them); nothing is
downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path

from .tiny import corpus_lines

SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def wordpiece(vocab_size: int = 400):
    """A BERT-style (lower-casing) WordPiece ``tokenizers.Tokenizer`` trained on the kit's corpus
    (tokenizers only: the core's tests use it without transformers)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator(corpus_lines(), trainers.WordPieceTrainer(vocab_size=vocab_size,
                                                                      special_tokens=list(SPECIALS)))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
                                                       special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return tok


def wordpiece_tokenizer(vocab_size: int = 400):
    """:func:`wordpiece` as transformers' fast tokenizer."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=wordpiece(vocab_size), unk_token="[UNK]", pad_token="[PAD]",
                                   cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
                                   model_max_length=128)


def tiny_bert(directory: str | Path, *, pooling: str = "mean", normalize: bool = True, hidden: int = 64,
              layers: int = 2, seed: int = 0) -> Path:
    """Write a tiny BERT sentence encoder to ``directory``; returns it.

    ``pooling`` (mean, cls, max) and ``normalize`` go to modules.json and
    1_Pooling/config.json as sentence-transformers writes them.
    """
    import torch
    from transformers import BertConfig, BertModel

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    tok = wordpiece_tokenizer()
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4,
                     intermediate_size=hidden * 2, max_position_embeddings=256, pad_token_id=tok.pad_token_id)
    model = BertModel(cfg).eval()
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    write_pooling(out, hidden, pooling, normalize)
    return out


def write_pooling(directory: Path, dimension: int, pooling: str = "mean", normalize: bool = False) -> None:
    """modules.json, 1_Pooling/config.json (and 2_Normalize) as sentence-transformers saves them."""
    out = Path(directory)
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize",
                        "type": "sentence_transformers.models.Normalize"})
        (out / "2_Normalize").mkdir(exist_ok=True)
    (out / "modules.json").write_text(json.dumps(modules, indent=2))
    (out / "1_Pooling").mkdir(exist_ok=True)
    (out / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": dimension, "pooling_mode_cls_token": pooling == "cls",
        "pooling_mode_mean_tokens": pooling == "mean", "pooling_mode_max_tokens": pooling == "max",
        "pooling_mode_mean_sqrt_len_tokens": False}, indent=2))
    (out / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 128, "do_lower_case": False}))


if __name__ == "__main__":  # python -m edgesmith.testing.tinybert DIR [SEED]
    import sys

    print(tiny_bert(sys.argv[1], seed=int(sys.argv[2]) if len(sys.argv) > 2 else 0))
