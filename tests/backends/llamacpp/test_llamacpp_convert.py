"""HF -> GGUF with llama.cpp's converter, checked with llama.cpp and the gguf reader."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edgesmith import api
from edgesmith.errors import UserError
from edgesmith.testing import CHAT_TEMPLATE

ARCHS = ("llama", "qwen2")


def _reader(out: Path):
    from gguf import GGUFReader

    return GGUFReader(str(out / "model.gguf"))


@pytest.mark.parametrize("arch", ARCHS)
def test_converted_gguf_loads_everywhere(gguf_of, arch: str) -> None:
    out = gguf_of(arch)
    manifest = json.loads((out / "edgesmith.json").read_text())
    assert manifest["format"] == "gguf" and manifest["entry"] == "model.gguf"
    r = _reader(out)
    fields = {k: r.fields[k].contents() for k in (
        "general.architecture", "tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.chat_template",
        "tokenizer.ggml.eos_token_id")}
    assert fields["general.architecture"] == arch
    assert fields["tokenizer.ggml.model"] == "gpt2"
    # The tiny tokenizer is unknown to the converter's hash table; we name it from its rules.
    assert fields["tokenizer.ggml.pre"] == "gpt-2"
    assert manifest["details"]["pre_tokenizer_source"] == "tokenizer.json pre_tokenizer rules"
    assert fields["tokenizer.chat_template"] == CHAT_TEMPLATE
    assert fields["tokenizer.ggml.eos_token_id"] == 2
    from llama_cpp import Llama

    llm = Llama(str(out / "model.gguf"), n_ctx=256, verbose=False)
    try:
        ids = llm.tokenize(b"<|im_start|>user\nHello there", add_bos=False, special=True)
        assert ids[0] == 1  # <|im_start|> is one control token
        assert llm.detokenize(ids[1:]).decode() == "user\nHello there"
    finally:
        llm.close()


def test_tokenization_matches_the_hf_tokenizer(gguf_of, tiny_model) -> None:
    from llama_cpp import Llama
    from tokenizers import Tokenizer

    hf = Tokenizer.from_file(str(tiny_model("llama") / "tokenizer.json"))
    llm = Llama(str(gguf_of("llama") / "model.gguf"), n_ctx=256, verbose=False)
    try:
        for text in ("The morning train was late, again.", "  spaces\n\nand 1234 numbers!",
                     "Unicode: café, naïve — ok"):
            assert llm.tokenize(text.encode(), add_bos=False) == hf.encode(text).ids, text
    finally:
        llm.close()


@pytest.mark.parametrize("dtype, expected", [("f32", "F32"), ("bf16", "BF16"), ("q8_0", "Q8_0")])
def test_dtype_option(gguf_of, dtype: str, expected: str) -> None:
    out = gguf_of("llama", dtype)
    types = {t.tensor_type.name for t in _reader(out).tensors if len(t.shape) >= 2}
    assert expected in types
    assert json.loads((out / "edgesmith.json").read_text())["details"]["dtype"] == dtype


def test_phi3_with_bpe_tokenizer_is_refused_in_one_line(tiny_model, tmp_path: Path) -> None:
    """llama.cpp's Phi3 converter reads only SentencePiece vocabularies."""
    with pytest.raises(UserError) as info:
        api.convert(tiny_model("phi3"), "gguf", tmp_path / "out", backend="llamacpp")
    msg = str(info.value)
    assert "Phi3ForCausalLM" in msg and "tokenizer.model" in msg and "\n" not in msg
    assert not (tmp_path / "out").exists()


def test_bad_dtype_is_refused(tiny_model, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="q8_0"):
        api.convert(tiny_model("llama"), "gguf", tmp_path / "out", backend="llamacpp", dtype="q4_0")
    assert not (tmp_path / "out").exists()


def test_unsupported_architecture_is_one_line(tiny_model, tmp_path: Path) -> None:
    ckpt = tmp_path / "odd"
    shutil.copytree(tiny_model("llama"), ckpt)
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg["architectures"] = ["FrobnicatorForCausalLM"]
    (ckpt / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UserError) as info:
        api.convert(ckpt, "gguf", tmp_path / "out", backend="llamacpp")
    msg = str(info.value)
    assert "FrobnicatorForCausalLM" in msg and "--print-supported-models" in msg and "\n" not in msg
    assert not (tmp_path / "out").exists()


def test_unknown_pretokenizer_is_named(tiny_model, tmp_path: Path) -> None:
    ckpt = tmp_path / "odd-tok"
    shutil.copytree(tiny_model("llama"), ckpt)
    tok = json.loads((ckpt / "tokenizer.json").read_text())
    tok["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": r"\s+"}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}
    (ckpt / "tokenizer.json").write_text(json.dumps(tok))
    with pytest.raises(UserError) as info:
        api.convert(ckpt, "gguf", tmp_path / "out", backend="llamacpp")
    assert "pre-tokenizer" in str(info.value) and "Sequence[Split, ByteLevel]" in str(info.value)
    assert not (tmp_path / "out").exists()


def test_pretokenizer_rules() -> None:
    from edgesmith_llamacpp.pretokenizer import identify

    base = {"model": {"type": "BPE"}, "normalizer": None, "decoder": {"type": "ByteLevel"}}
    gpt2 = {**base, "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}}
    assert identify(gpt2) == "gpt-2"
    prefix = {**base, "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": True, "use_regex": True}}
    assert identify(prefix) is None  # llama.cpp's gpt-2 splitting adds no prefix space
    assert identify({**gpt2, "normalizer": {"type": "NFC"}}) is None
    smol = {**base, "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True},
        {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}]}}
    assert identify(smol) == "smollm"
