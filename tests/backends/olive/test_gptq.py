"""Data-aware int4: GPTQ from a plain-text --calibration file, no hub dataset."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from edgesmith import api
from edgesmith.errors import UnsupportedError, UserError
from edgesmith.types import RunRequest

pytest.importorskip("olive", reason="edgesmith-olive's stack (olive-ai) is not installed")
pytest.importorskip("onnxruntime_genai", reason="onnxruntime-genai is not installed")
pytest.importorskip("torch")

CALIBRATION = (
    "The morning train left the station on time. Rain came down over the quiet town, and the library "
    "stayed open late for the students who were reading about rivers, mountains and old kings. "
) * 12
EVAL_TEXT = "The library was quiet except for the turning of pages, and rain fell on the town."

#: Runs the bundle with onnxruntime_genai alone (no edgesmith import).
DIRECT = r"""
import sys
import onnxruntime_genai as og
assert "edgesmith" not in sys.modules
model = og.Model(sys.argv[1])
tok = og.Tokenizer(model)
ids = tok.encode("The morning train")
params = og.GeneratorParams(model)
params.set_search_options(max_length=len(ids) + 4, do_sample=False)
gen = og.Generator(model, params)
gen.append_tokens(ids)
n = 0
while not gen.is_done():
    gen.generate_next_token()
    n += 1
print(n)
"""


def perplexity(path, text: str = EVAL_TEXT) -> float:
    with api.load(path, backend="olive") as runner:
        ids = runner.tokenize(text)
        lp = runner.logprobs(ids)
    return float(np.exp(-np.mean([lp[i, ids[i + 1]] for i in range(len(ids) - 1)])))


@pytest.fixture(scope="module")
def gptq_bundle(tiny, tmp_path_factory):
    """GPTQ int4 of the tiny llama, made through the CLI."""
    root = tmp_path_factory.mktemp("gptq")
    text = root / "calib.txt"
    text.write_text(CALIBRATION)
    out = root / "model"
    from edgesmith.cli import main

    res = CliRunner().invoke(main, ["quantize", str(tiny("llama")), "--bits", "4", "--method", "gptq",
                                    "--calibration", str(text), "--option", "seq_len=64",
                                    "--option", "samples=8", "-o", str(out), "--backend", "olive"])
    assert res.exit_code == 0, res.output
    return out


def test_gptq_bundle_runs_and_tracks_fp32(gptq_bundle, bundles, clean_env, network_attempts):
    manifest = json.loads((gptq_bundle / "edgesmith.json").read_text())
    details = manifest["details"]
    assert manifest["operation"]["name"] == "quantize" and manifest["format"] == "onnx"
    assert details["method"] == "gptq" and details["olive_passes"] == ["Gptq", "ModelBuilder"]
    assert details["calibration"]["copy"] == "calibration.txt"
    for f in ("model.onnx", "model.onnx.data", "genai_config.json", "olive_config.json",
              "olive_calibration.py", "calibration.txt"):
        assert (gptq_bundle / f).is_file(), f
    config = json.loads((gptq_bundle / "olive_config.json").read_text())
    data = config["passes"]["gptq"]["data_config"]
    assert data["user_script"] == "olive_calibration.py"
    assert data["load_dataset_config"]["params"]["data_file"] == "calibration.txt"

    import onnx

    ops = {n.op_type for n in onnx.load(str(gptq_bundle / "model.onnx"), load_external_data=False).graph.node}
    assert "MatMulNBits" in ops

    with api.load(gptq_bundle, backend="olive") as runner:
        res = runner.generate(RunRequest(prompt="The morning train", max_tokens=4))
        ids = runner.tokenize(EVAL_TEXT)
        ours = runner.logprobs(ids)
    assert res.generated_tokens >= 1
    with api.load(bundles("llama", "onnx"), backend="olive") as runner:
        ref = runner.logprobs(ids)
    assert np.corrcoef(ours.ravel(), ref.ravel())[0, 1] > 0.9
    fp32_ppl, gptq_ppl = perplexity(bundles("llama", "onnx")), perplexity(gptq_bundle)
    assert gptq_ppl < fp32_ppl * 1.25, (gptq_ppl, fp32_ppl)

    direct = subprocess.run([sys.executable, "-c", DIRECT, str(gptq_bundle)], capture_output=True,
                            text=True, env=clean_env, timeout=300)
    assert direct.returncode == 0 and int(direct.stdout.split()[-1]) >= 1, direct.stderr[-1500:]
    assert network_attempts == []  # Gptq ran with the hub and sockets closed


def test_gptq_refusals(tiny, bundles, tmp_path):
    text = tmp_path / "calib.txt"
    text.write_text(CALIBRATION)
    empty = tmp_path / "no-text"  # a directory stands for its .txt/.md files
    empty.mkdir()
    out = tmp_path / "out"
    cases = [
        (UserError, "Hugging Face checkpoint",
         lambda: api.quantize(bundles("llama", "onnx"), out, bits=4, method="gptq", calibration=text,
                              backend="olive")),
        (UserError, "--calibration FILE",
         lambda: api.quantize(tiny("llama"), out, bits=4, method="gptq", backend="olive")),
        (UserError, "holds no .txt or .md files",
         lambda: api.quantize(tiny("llama"), out, bits=4, method="gptq", calibration=empty,
                              backend="olive")),
        (UnsupportedError, "autoawq",
         lambda: api.quantize(tiny("llama"), out, bits=4, method="awq", calibration=text, backend="olive")),
        (UnsupportedError, "--method gptq",
         lambda: api.quantize(tiny("llama"), out, bits=4, method="rtn", backend="olive")),
    ]
    for exc, words, call in cases:
        with pytest.raises(exc, match=words) as info:
            call()
        assert "\n" not in str(info.value)
        assert not out.exists()
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]
