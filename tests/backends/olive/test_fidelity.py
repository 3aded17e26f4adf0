"""A bundle scores text as the Hugging Face model does, for checkpoints saved by transformers 5.

Two faults once made an imported SmolLM2 score perplexity 1300 instead of 30
while its greedy answers still read well:

- transformers 5 keeps ``rope_theta`` only inside ``rope_parameters``; the
  GenAI builder then baked theta 10000 into the graph (wrong from the second
  position on; the tiny factory's own theta is 10000, which hid it);
- the GGUF importer's byte-level tokenizer.json carries SentencePiece decoder
  steps, and the GenAI tokenizer then split text wrongly (ids of -1).

The checkpoint here has both traits, and sharpened attention so that position
handling shows in the logits.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgesmith import api
from edgesmith.errors import UserError
from edgesmith.measure.text import load_text
from edgesmith.testing import tiny_checkpoint

pytest.importorskip("olive", reason="edgesmith-olive's stack (olive-ai) is not installed")
pytest.importorskip("onnxruntime_genai", reason="onnxruntime-genai is not installed")
torch = pytest.importorskip("torch")

ROPE_THETA = 100000.0
#: What transformers writes for a byte-level BPE imported from GGUF.
GGUF_DECODER = {
    "type": "Sequence",
    "decoders": [
        {"type": "ByteFallback"},
        {"type": "Fuse"},
        {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
        {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
    ],
}


def _gguf_style_checkpoint(dest: Path) -> Path:
    from safetensors.numpy import load_file, save_file
    from transformers import AutoConfig

    src = tiny_checkpoint(dest, "llama")  # its widths differ from the vocabulary
    # Saved the transformers 5 way: theta only inside rope_parameters.
    cfg = AutoConfig.from_pretrained(src)
    cfg.rope_parameters = {"rope_type": "default", "rope_theta": ROPE_THETA}
    cfg.save_pretrained(src)
    assert "rope_theta" not in json.loads((src / "config.json").read_text())
    tok = json.loads((src / "tokenizer.json").read_text())
    tok["model"]["byte_fallback"] = True
    tok["decoder"] = GGUF_DECODER
    (src / "tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False))
    # Random q/k of std 0.02 give near-uniform attention, blind to positions.
    w = load_file(str(src / "model.safetensors"))
    for name in w:
        if name.endswith(("q_proj.weight", "k_proj.weight")):
            w[name] = w[name] * 6.0
    save_file(w, str(src / "model.safetensors"), metadata={"format": "pt"})
    return src


@pytest.fixture(scope="module")
def gguf_style(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("fidelity")
    src = _gguf_style_checkpoint(root / "hf")
    api.convert(src, to="onnx", output=root / "onnx", backend="olive")
    return src, root / "onnx"


def _reference(src: Path, ids: list[int]) -> np.ndarray:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32).eval()
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].double()
    return torch.log_softmax(logits, -1).numpy()


def test_tokenizer_matches_hugging_face(gguf_style):
    from tokenizers import Tokenizer

    src, bundle = gguf_style
    text = load_text(None)[0][:20000]
    want = Tokenizer.from_file(str(src / "tokenizer.json")).encode(text, add_special_tokens=False).ids
    with api.load(bundle, backend="olive") as runner:
        got = runner.tokenize(text, add_special=False)
        assert got == want
        assert runner.detokenize(want[:300]) == Tokenizer.from_file(str(src / "tokenizer.json")).decode(want[:300])
    repairs = json.loads((bundle / "edgesmith.json").read_text())["details"]["repairs"]
    assert "tokenizer_decoder" in repairs


def test_logprobs_match_transformers(gguf_style):
    """Several windows, a long sequence and repeated calls on one runner."""
    src, bundle = gguf_style
    with api.load(bundle, backend="olive") as runner:
        ids = runner.tokenize(load_text(None)[0], add_special=False)[:900]
        long = runner.logprobs(ids)
        windows = [runner.logprobs(ids[a:a + 300]) for a in (0, 300, 600)]
        again = runner.logprobs(ids[:300])
    ref = _reference(src, ids)
    assert long.shape == ref.shape
    # Per position: a RoPE fault leaves position 0 right and the rest wrong.
    err = np.abs(long - ref).max(axis=1)
    assert err.max() < 2e-3, f"worst position {int(err.argmax())}: {err.max():.4f}"
    for n, got in enumerate(windows):
        want = _reference(src, ids[300 * n:300 * (n + 1)])
        assert np.abs(got - want).max() < 2e-3, n
    np.testing.assert_array_equal(again, windows[0])


def test_unrepaired_bundle_is_refused(gguf_style, tmp_path):
    """Bundles made before the tokenizer repair name the fix instead of scoring garbage."""
    src, bundle = gguf_style
    old = tmp_path / "old"
    old.mkdir()
    for f in bundle.iterdir():
        (old / f.name).symlink_to(f)
    (old / "tokenizer.json").unlink()
    shutil.copyfile(src / "tokenizer.json", old / "tokenizer.json")
    with pytest.raises(UserError, match="rebuild the bundle"):
        api.load(old, backend="olive")
