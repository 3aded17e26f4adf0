"""Typed -O options of the llama.cpp backend: bad keys and values stop at once, in one line."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from edgesmith import api
from edgesmith.errors import UserError
from edgesmith.testing.cli import error_line
from edgesmith.types import RunRequest


def test_out_of_range_n_ctx_fails_at_once(gguf_of) -> None:
    # Was: llama.cpp tried to allocate the context for ~40 s, then called the file corrupt.
    t0 = time.perf_counter()
    line = error_line("run", gguf_of("llama"), "-p", "hi", "-O", "n_ctx=99999999999", "-b", "llamacpp")
    assert time.perf_counter() - t0 < 20
    assert "llamacpp load gguf: option n_ctx=99999999999 is not valid; give a whole number from 1 to" in line


def test_n_ctx_is_bounded_by_the_trained_context(gguf_of) -> None:
    # The tiny model was trained for 2048 positions: that is the ceiling.
    line = error_line("run", gguf_of("llama"), "-p", "hi", "-O", "n_ctx=4096", "-b", "llamacpp")
    assert line.endswith("llamacpp load gguf: option n_ctx=4096 is not valid; give a whole number "
                         "from 1 to 2048")


def test_unknown_key_names_backend_operation_and_key(gguf_of, tmp_path: Path) -> None:
    out = tmp_path / "q"
    line = error_line("quantize", gguf_of("llama"), "-o", out, "--scheme", "Q8_0", "-O", "colour=blue",
                      "-b", "llamacpp")
    assert "llamacpp quantize gguf has no option 'colour'; known options: pure" in line
    assert not out.exists()


def test_bad_bool_is_refused(gguf_of, tmp_path: Path) -> None:
    # Was: pure=maybe silently meant false.
    out = tmp_path / "q"
    line = error_line("quantize", gguf_of("llama"), "-o", out, "--scheme", "Q8_0", "-O", "pure=maybe",
                      "-b", "llamacpp")
    assert "llamacpp quantize gguf: option pure=maybe is not valid; give true or false" in line
    assert not out.exists()


@pytest.mark.parametrize("word", ["on", "YES", "1"])
def test_bool_spellings(gguf_of, tmp_path: Path, word: str) -> None:
    art = api.quantize(gguf_of("llama"), tmp_path / "q", scheme="Q4_0", backend="llamacpp",
                       options={"pure": word})
    assert art.details["pure"] is True


def test_n_batch_is_bounded_by_n_ctx(gguf_of) -> None:
    with pytest.raises(UserError, match=r"llamacpp load gguf: option n_batch=1024 .* from 1 to 512$"):
        api.load(gguf_of("llama"), backend="llamacpp", options={"n_ctx": "512", "n_batch": "1024"})
    with pytest.raises(UserError, match="n_ctx=0 is not valid"):
        api.load(gguf_of("llama"), backend="llamacpp", options={"n_ctx": "0"})
    # Keys are case- and dash-insensitive. (llama.cpp pads n_ctx to a multiple of 256.)
    with api.load(gguf_of("llama"), backend="llamacpp", options={"N-CTX": "512", "n_batch": "16"}) as r:
        assert r.context_length == 512 and r._llm.n_batch == 16


def test_dtype_aliases(tiny_model, tmp_path: Path) -> None:
    art = api.convert(tiny_model("llama"), "gguf", tmp_path / "g", backend="llamacpp", dtype="FP32")
    assert art.details["dtype"] == "f32"
    assert json.loads((tmp_path / "g" / "edgesmith.json").read_text())["details"]["dtype"] == "f32"
    line = error_line("convert", tmp_path / "g", "--to", "hf", "-o", tmp_path / "hf", "--dtype", "q8_0",
                      "-b", "llamacpp")
    assert "llamacpp convert gguf->hf: option dtype=q8_0 is not valid; give one of f16, bf16, f32" in line


def test_empty_prompt_is_a_user_error(gguf_of) -> None:
    # The qwen2 vocabulary adds no BOS, so "" has no tokens: llama.cpp would fail an assertion.
    with api.load(gguf_of("qwen2"), backend="llamacpp") as runner:
        assert runner.tokenize("") == []
        with pytest.raises(UserError, match="prompt is empty") as info:
            runner.generate(RunRequest(prompt="", max_tokens=2))
    assert "\n" not in str(info.value)


def test_missing_tokenizer_names_the_files(tiny_model, tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_model("llama"), ckpt)
    (ckpt / "tokenizer.json").unlink()
    line = error_line("convert", ckpt, "--to", "gguf", "-o", tmp_path / "out", "-b", "llamacpp")
    assert "tokenizer.json" in line and "tokenizer.model" in line and "copy the model's tokenizer" in line
