"""The tiny-model factory writes real checkpoints: transformers loads them and
its logits agree with an independent numpy forward pass."""

from __future__ import annotations

import numpy as np
import pytest

from edgesmith.testing import ARCHITECTURES, tiny_checkpoint

from .refbackend.edgesmith_ref.runner import NumpyRunner


def test_fast_and_small(tmp_path):
    import time

    t = time.perf_counter()
    p = tiny_checkpoint(tmp_path / "m", "llama")
    assert time.perf_counter() - t < 10
    size = sum(f.stat().st_size for f in p.iterdir())
    assert size < 10 * 2**20


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_transformers_loads_and_agrees(arch, tiny_model):
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    path = tiny_model(arch)
    tok = transformers.AutoTokenizer.from_pretrained(path)
    model = transformers.AutoModelForCausalLM.from_pretrained(path)
    ids = tok("The bakery opened at six.")["input_ids"]
    assert tok.decode(ids) == "The bakery opened at six."
    chat = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                   add_generation_prompt=True)
    assert chat.endswith("<|im_start|>assistant\n")
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].numpy()
    assert logits.shape == (len(ids), model.config.vocab_size)
    if arch in ("llama", "qwen2"):
        ref = NumpyRunner(path)._logits(ids)
        np.testing.assert_allclose(ref, logits, atol=2e-4)
