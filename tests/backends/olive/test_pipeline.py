"""convert -> int4 -> run on every test architecture, through the API and outside edgesmith."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgesmith import api
from edgesmith.types import RunRequest

pytest.importorskip("olive", reason="edgesmith-olive's stack (olive-ai) is not installed")
pytest.importorskip("onnxruntime_genai", reason="onnxruntime-genai is not installed")

ARCHS = ("llama", "qwen2", "phi3")

#: Runs a bundle with onnxruntime_genai alone: no edgesmith import.
DIRECT = r"""
import json, sys
import numpy as np
import onnxruntime_genai as og
assert "edgesmith" not in sys.modules
model = og.Model(sys.argv[1])
tok = og.Tokenizer(model)
ids = tok.encode("The morning train")
params = og.GeneratorParams(model)
params.set_search_options(max_length=len(ids) + 6, do_sample=False)
gen = og.Generator(model, params)
gen.append_tokens(ids)
out = []
while not gen.is_done():
    gen.generate_next_token()
    out.append(int(gen.get_next_tokens()[0]))
print(json.dumps({"prompt": [int(i) for i in ids], "tokens": out, "text": tok.decode(np.array(out, dtype=np.int32))}))
"""


def run_direct(bundle: Path, env: dict) -> dict:
    res = subprocess.run([sys.executable, "-c", DIRECT, str(bundle)], capture_output=True, text=True,
                         env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("arch", ARCHS)
def test_convert_quantize_run(arch, bundles, clean_env):
    fp32 = bundles(arch, "onnx")
    int4 = bundles(arch, "int4")
    for path, op in ((fp32, "convert"), (int4, "quantize")):
        manifest = json.loads((path / "edgesmith.json").read_text())
        assert manifest["backend"]["name"] == "olive" and manifest["operation"]["name"] == op
        assert manifest["format"] == "onnx"
        for f in ("model.onnx", "model.onnx.data", "genai_config.json", "tokenizer.json",
                  "olive_config.json", "olive.log"):
            assert (path / f).is_file(), f"{path.name} lacks {f}"
        assert not (path / ".olive-work").exists()
        config = json.loads((path / "olive_config.json").read_text())
        assert config["output_dir"] == "olive-output" and config["cache_dir"] == ".olive-cache"
    details = json.loads((fp32 / "edgesmith.json").read_text())["details"]
    assert details["provider"] == "cpu" and details["olive_passes"] == ["ModelBuilder"]
    qdetails = json.loads((int4 / "edgesmith.json").read_text())["details"]
    assert qdetails["bits"] == 4 and qdetails["method"] == "rtn" and qdetails["block_size"] == 32
    assert (int4 / "model.onnx.data").stat().st_size < (fp32 / "model.onnx.data").stat().st_size / 3

    with api.load(int4, backend="olive") as runner:
        result = runner.generate(RunRequest(prompt="The morning train", max_tokens=6))
    assert 1 <= result.generated_tokens <= 6

    # Outside edgesmith: onnxruntime_genai alone loads and generates, same greedy tokens.
    direct = run_direct(int4, clean_env)
    with api.load(int4, backend="olive") as runner:
        assert runner.tokenize("The morning train") == direct["prompt"]
        ours = runner.generate(RunRequest(prompt="The morning train", max_tokens=len(direct["tokens"])))
    assert list(ours.token_ids) == direct["tokens"][: len(ours.token_ids)]
    run_direct(fp32, clean_env)


@pytest.mark.parametrize("arch", ARCHS)
def test_fp32_bundle_matches_transformers(arch, tiny, bundles):
    """The converted graph computes what the Hugging Face model computes."""
    torch = pytest.importorskip("torch")
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny(arch), dtype=torch.float32)
    with api.load(bundles(arch, "onnx"), backend="olive") as runner:
        ids = runner.tokenize("The library was quiet except for the turning of pages.")
        ours = runner.logprobs(ids)
    with torch.no_grad():
        ref = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), -1).numpy()
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() < 1e-3
    with api.load(bundles(arch, "int4"), backend="olive") as runner:
        ours_int4 = runner.logprobs(ids)
    # int4 RTN (block 32) tracks the float model; a broken graph does not.
    corr = np.corrcoef(ours_int4.ravel(), ref.ravel())[0, 1]
    assert corr > 0.9, corr


def test_width_equal_to_vocab_is_refused(tmp_path):
    """The GenAI builder's LM-head heuristic would silently build a wrong model."""
    from edgesmith.errors import UnsupportedError
    from edgesmith.testing import tiny_checkpoint

    src = tiny_checkpoint(tmp_path / "clash", "llama", intermediate_size=512, vocab_size=512)
    with pytest.raises(UnsupportedError, match="LM head"):
        api.convert(src, to="onnx", output=tmp_path / "out", backend="olive")
    assert not (tmp_path / "out").exists()


def test_chat_template_from_checkpoint(bundles):
    with api.load(bundles("qwen2", "int4"), backend="olive") as runner:
        prompt = runner.chat_prompt([{"role": "user", "content": "Hi"}])
    assert prompt == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"


def test_convert_straight_to_int4_and_fp16(tiny, tmp_path, clean_env):
    """The builder's own int4 path and fp16-for-CPU (builder fp32 + OnnxFloatToFloat16)."""
    int4 = api.convert(tiny("qwen2"), to="onnx", output=tmp_path / "int4", backend="olive",
                       dtype="int4", options={"block_size": "64"})
    assert int4.details["dtype"] == "int4"
    fp16 = api.convert(tiny("qwen2"), to="onnx", output=tmp_path / "fp16", backend="olive", dtype="fp16")
    assert fp16.details["olive_passes"] == ["ModelBuilder", "OnnxFloatToFloat16"]
    for path in (int4.path, fp16.path):
        out = run_direct(path, clean_env)
        assert out["tokens"]
