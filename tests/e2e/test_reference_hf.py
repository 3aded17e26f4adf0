"""``edgesmith eval CANDIDATE --reference HF_DIR``: the Hugging Face checkpoint itself,
run by the transformers backend in float32, is the reference every stack's
conversion is scored against (not the stack's own unquantized conversion, which
would hide a conversion fault in the base).

One tiny Llama 3.2 checkpoint of the test kit (Llama 3 RoPE scaling, tied
embeddings, a BOS the tokenizer adds) is converted by each text stack through
the API from this core-only environment, each in its backend's environment;
one ``edgesmith eval`` run (the CLI, a subprocess) then scores them all. The
full-precision conversions agree with the reference, a 4-bit one measurably
less, and a conversion of a deliberately broken copy (RoPE bases halved, as the
test kit breaks one) is caught by the top-1 gate.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from edgesmith import api
from edgesmith.testing.fidelity import MEAN_KL_MAX, TOP1_MIN, copy_with_config

NEEDED = {"transformers", "llamacpp", "olive", "openvino", "mlx"}
#: OpenVINO's CPU plugin runs bf16 and a compressed KV cache by default; compiled at f32
#: the comparison is of the conversion, not of the execution precision (docs/models.md).
OV_FULL = {"inference_precision": "f32", "kv_cache_precision": "f32"}
#: Candidates held to the full-precision bounds, by the label used below.
FULL = ("llamacpp-f32", "olive-f32", "openvino-f32", "mlx-f32")


def _candidates(src: Path, tmp: Path) -> dict[str, Path]:
    gguf = api.convert(src, "gguf", tmp / "gguf-f32", backend="llamacpp", dtype="f32").path
    ir = api.convert(src, "openvino", tmp / "ir-f32", backend="openvino", dtype="fp32").path
    broken = copy_with_config(src, tmp / "broken-hf", rope_theta=0.5)
    return {
        "llamacpp-f32": gguf,
        "olive-f32": api.convert(src, "onnx", tmp / "onnx-f32", backend="olive", dtype="f32").path,
        "openvino-f32": api.compile(ir, "cpu", tmp / "ov-f32", backend="openvino", options=OV_FULL).path,
        "mlx-f32": api.convert(src, "mlx", tmp / "mlx-f32", backend="mlx", dtype="float32").path,
        "llamacpp-q4": api.quantize(gguf, tmp / "gguf-q4", backend="llamacpp", scheme="Q4_K_M").path,
        # MLX keeps the halved bases it is given: a conversion that got RoPE wrong.
        "mlx-broken": api.convert(broken, "mlx", tmp / "mlx-broken", backend="mlx", dtype="float32").path,
    }


@pytest.fixture(scope="module")
def evaluated(arch_model, tmp_path_factory) -> dict[str, Any]:
    usable = {r.name for r in api.backends() if r.usable}
    if not NEEDED <= usable:
        pytest.skip(f"needs {', '.join(sorted(NEEDED))}; missing {', '.join(sorted(NEEDED - usable))}")
    tmp = tmp_path_factory.mktemp("reference-hf")
    src = arch_model("llama3.2")
    arts = _candidates(src, tmp)
    cmd = [sys.executable, "-m", "edgesmith.cli", "eval", *map(str, arts.values()), "--reference", str(src),
           "--window", "64", "--windows", "2", "--smoke-tokens", "8", "--min-speedup", "off",
           "--max-size-ratio", "off", "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    # 3: gates failed (the broken candidate's, and the smoke test of a random tiny model).
    assert done.returncode in (0, 3), done.stderr[-3000:]
    doc = json.loads(done.stdout)
    rows = {label: row for label, row in zip(arts, doc["artifacts"], strict=True)}
    for label, row in rows.items():
        print(f"{label}: top1 {row.get('top1')}  KL {row.get('kl')}  ppl ratio {row.get('ppl_ratio')}")
    return {"doc": doc, "rows": rows, "src": src, "stderr": done.stderr}


def test_the_reference_is_the_checkpoint_run_by_transformers(evaluated):
    ref = evaluated["doc"]["reference"]
    assert Path(ref["path"]).resolve() == evaluated["src"].resolve()
    assert ref["backend"]["name"] == "transformers"
    assert ref["backend"]["libraries"]["transformers"] == "5.7.0"
    assert ref["windows"] == 2 and ref["scored_tokens"] == 126
    for label, row in evaluated["rows"].items():
        assert row["status"] == "ok", (label, row.get("error"), row.get("log_tail"))
        assert row["backend"]["name"] == label.split("-")[0]
        assert row["vocab"] == ref["vocab"] and row["scored_tokens"] == ref["scored_tokens"]


@pytest.mark.parametrize("label", FULL)
def test_full_precision_conversions_agree_with_the_checkpoint(evaluated, label):
    row = evaluated["rows"][label]
    assert row["top1"] >= TOP1_MIN and row["kl"] <= MEAN_KL_MAX, row
    assert abs(row["ppl_ratio"] - 1) < 1e-2, row
    assert {g["gate"]: g["state"] for g in row["gates"]}["min_top1"] == "pass"


def test_a_quantized_conversion_is_measurably_worse(evaluated):
    rows = evaluated["rows"]
    q4, f32 = rows["llamacpp-q4"], rows["llamacpp-f32"]
    assert q4["top1"] < f32["top1"] - 0.05
    assert q4["kl"] > 0.05 and q4["kl"] > 100 * max(f32["kl"], 1e-9)


def test_a_broken_conversion_is_caught(evaluated):
    row = evaluated["rows"]["mlx-broken"]
    assert row["top1"] < 0.9 and row["kl"] > 1.0, row
    gates = {g["gate"]: g for g in row["gates"]}
    assert gates["min_top1"]["state"] == "fail" and row["verdict"] == "fail"
    assert row["name"] in evaluated["stderr"] and "--min-top1" in evaluated["stderr"]
