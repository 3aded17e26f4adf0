"""quantize (a16w8, a8w8) -> compile for the NPU -> run on the HTP, on the real QNN EP."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from qnn_testkit import SEQ, SHAPE, TEXTS, cosine

from edgesmith import api
from edgesmith.errors import UnsupportedError, UserError
from edgesmith.manifest import MANIFEST_NAME
from edgesmith.types import RunRequest


def manifest(d: Path) -> dict:
    return json.loads((d / MANIFEST_NAME).read_text())


def _details(m: dict) -> dict:
    # The core records Artifact.details in the manifest; find them wherever it puts them.
    for key in ("details", "backend_details"):
        if isinstance(m.get(key), dict):
            return m[key]
    op = m.get("operation", {})
    return op.get("details", {}) if isinstance(op, dict) else {}


@pytest.mark.parametrize("scheme", ["a16w8", "a8w8", "a16w4"])
def test_quantize_compile_run_matches_fp32(scheme, quantized, compiled, reference):
    q, npu = quantized(scheme), compiled(scheme)
    qd = _details(manifest(q))
    assert qd["scheme"] == scheme
    assert qd["activation_type"] == ("uint8" if scheme == "a8w8" else "uint16")
    assert qd["weight_type"].startswith("int4" if scheme == "a16w4" else "uint8")
    assert qd["calibration"]["kind"] == "text" and qd["calibration"]["samples"] > 0
    assert qd["placement"]["all_on_qnn"], qd["placement"]
    nd = _details(manifest(npu))
    assert nd["context_binaries"] == ["model_qnn.bin"] and (npu / "model_qnn.bin").stat().st_size > 0
    assert nd["htp_performance_mode"] == "burst"
    assert (nd["soc_model"], nd["htp_arch"]) == (("60", "75") if scheme == "a8w8" else ("default", "default"))
    assert nd["placement"]["cpu_nodes"] == 0 and nd["placement"]["qnn_partitions"] == 1
    times = nd["session_create_s"]
    # Loading the context binary skips graph preparation.
    assert times["epcontext"] < times["source"], times
    with api.load(npu, backend="qnn") as runner:
        assert runner.providers[0] == "QNNExecutionProvider"
        for text in TEXTS:
            feed = runner.encode(text)
            out = runner.infer(feed)["last_hidden_state"]
            assert out.shape == (1, SEQ, 64)
            assert runner.last_timings["infer_s"] > 0
            assert cosine(out, reference(feed)) >= 0.98, (scheme, text)


def test_epcontext_loads_in_plain_onnxruntime(compiled, tmp_path):
    """The compiled model needs only onnxruntime + onnxruntime-qnn: no edgesmith import."""
    npu = compiled("a16w8")
    ids = np.arange(SEQ, dtype=np.int64)[None] % 100
    np.save(tmp_path / "ids.npy", ids)
    code = f"""
import sys, numpy as np, onnxruntime as ort, onnxruntime_qnn as q
ort.register_execution_provider_library("QNNExecutionProvider", q.get_library_path())
so = ort.SessionOptions()
so.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
so.add_provider_for_devices([d for d in ort.get_ep_devices() if d.ep_name == "QNNExecutionProvider"],
                            {{"backend_type": "htp", "offload_graph_io_quantization": "0"}})
s = ort.InferenceSession({str(npu / "model.onnx")!r}, sess_options=so)
ids = np.load({str(tmp_path / "ids.npy")!r})
y = s.run(None, {{"input_ids": ids, "attention_mask": np.ones_like(ids)}})[0]
assert "edgesmith" not in sys.modules
np.save({str(tmp_path / "y.npy")!r}, y)
print(s.get_providers()[0])
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "QNNExecutionProvider"
    with api.load(npu, backend="qnn") as runner:
        mine = runner.infer({"input_ids": ids, "attention_mask": np.ones_like(ids)})["last_hidden_state"]
    assert np.allclose(np.load(tmp_path / "y.npy"), mine)


def test_qdq_model_runs_on_htp_too(quantized, reference):
    with api.load(quantized("a8w8"), backend="qnn") as runner:
        feed = runner.encode(TEXTS[0])
        assert cosine(runner.infer(feed)["last_hidden_state"], reference(feed)) >= 0.98


def test_convert_fixes_dynamic_dims(encoder, tmp_path):
    out = tmp_path / "static"
    art = api.convert(encoder, "onnx", out, backend="qnn", options={"shape": "input_ids:1x8"})
    assert art.format == "onnx"
    info = api.inspect(out)
    assert info["inputs"] == {"input_ids": [1, 8], "attention_mask": [1, 8]}
    assert (out / "tokenizer.json").exists()


def test_dynamic_shape_is_a_one_line_error(encoder, tmp_path):
    out = tmp_path / "q"
    with pytest.raises(UserError, match=r"input 'input_ids' .*--option shape=input_ids:1x128") as e:
        api.quantize(encoder, out, scheme="a8w8", backend="qnn")
    assert "\n" not in str(e.value) and not out.exists()


def test_npy_calibration_and_mismatch(encoder, tmp_path, reference):
    cal = tmp_path / "cal"
    cal.mkdir()
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 512, (6, 1, SEQ)).astype(np.int64)
    mask = np.ones_like(ids)
    mask[::2, :, SEQ // 2:] = 0
    np.save(cal / "input_ids.npy", ids)
    np.save(cal / "attention_mask.npy", mask)
    out = tmp_path / "q"
    api.quantize(encoder, out, scheme="a16w8", calibration=cal, backend="qnn",
                 options={**SHAPE, "placement": "0"})
    assert _details(manifest(out))["calibration"] == {"kind": "npy", "source": str(cal), "samples": 6}
    (cal / "attention_mask.npy").rename(cal / "mask.npy")
    bad = tmp_path / "bad"
    with pytest.raises(UserError, match="does not match the model.*attention_mask") as e:
        api.quantize(encoder, bad, scheme="a16w8", calibration=cal, backend="qnn", options=SHAPE)
    assert "\n" not in str(e.value) and not bad.exists()


def test_unsupported_op_without_fallback_names_it(unsupported, tmp_path):
    out = tmp_path / "npu"
    with pytest.raises(UserError, match=r"Det x1.*cpu_fallback=1") as e:
        api.compile(unsupported, output=out, device="npu", backend="qnn", options={"soc_model": "60"})
    assert "\n" not in str(e.value) and not out.exists()
    # Allowed explicitly, the placement report shows where it went.
    api.compile(unsupported, output=out, device="npu", backend="qnn",
                options={"soc_model": "60", "cpu_fallback": "1"})
    place = _details(manifest(out))["placement"]
    assert place["cpu_ops"].get("Det") == 1 and not place["all_on_qnn"]


def test_bad_options_and_specs(encoder, tmp_path):
    with pytest.raises(UserError, match="qnn quantize onnx->qnn has no option 'nope'; known options: "
                                        "calibrate_method"):
        api.quantize(encoder, tmp_path / "a", scheme="a8w8", backend="qnn", options={"nope": "1"})
    with pytest.raises(UnsupportedError, match="group"):
        api.quantize(encoder, tmp_path / "b", bits=8, group_size=32, backend="qnn", options=SHAPE)
    with pytest.raises(UserError, match="htp_performance_mode"):
        api.compile(encoder, output=tmp_path / "c", device="npu", backend="qnn",
                    options={**SHAPE, "htp_performance_mode": "ludicrous"})
    with pytest.raises(UserError, match="htp_arch=99"):
        api.compile(encoder, output=tmp_path / "d", device="npu", backend="qnn",
                    options={**SHAPE, "htp_arch": "99"})
    assert not any(tmp_path.iterdir())


def test_generate_on_an_encoder_is_a_clear_unsupported(compiled):
    with api.load(compiled("a16w8"), backend="qnn") as runner:
        with pytest.raises(UnsupportedError, match="infer"):
            runner.generate(RunRequest(prompt="hello", max_tokens=2))


def test_hf_bert_export_quantize_compile_run(hf_encoder, calib_text, tmp_path):
    """The issue's path on a real exporter's graph: transformers BertModel -> torch.onnx ->
    a16w8 / a8w8 -> EPContext -> HTP, close to fp32."""
    import onnxruntime as ort

    ref = ort.InferenceSession(str(hf_encoder / "model.onnx"), providers=["CPUExecutionProvider"])
    for scheme in ("a16w8", "a8w8"):
        q, npu = tmp_path / f"q-{scheme}", tmp_path / f"npu-{scheme}"
        art = api.quantize(hf_encoder, q, scheme=scheme, calibration=calib_text, backend="qnn",
                           options=SHAPE)
        assert "graph_rewrites" in art.details
        assert art.details["placement"]["all_on_qnn"], art.details["placement"]
        api.compile(q, output=npu, device="npu", backend="qnn")
        with api.load(npu, backend="qnn") as runner:
            for text in TEXTS:
                feed = runner.encode(text)
                got = runner.infer(feed)["last_hidden_state"]
                assert cosine(got, ref.run(None, feed)[0]) >= 0.98, (scheme, text)


def test_float_graph_compiles_in_fp16_for_a_named_soc(encoder, reference, tmp_path):
    out = tmp_path / "fp16"
    with pytest.raises(UserError, match="soc_model=N") as e:
        api.compile(encoder, output=out, device="npu", backend="qnn", options=SHAPE)
    assert "\n" not in str(e.value) and not out.exists()
    art = api.compile(encoder, output=out, device="npu", backend="qnn",
                      options={**SHAPE, "soc_model": "60"})
    assert art.details["precision"].startswith("fp16") and art.details["placement"]["all_on_qnn"]
    with api.load(out, backend="qnn") as runner:
        feed = runner.encode(TEXTS[0])
        assert cosine(runner.infer(feed)["last_hidden_state"], reference(feed)) >= 0.98


def test_causal_lm_perplexity_close_to_fp32(causal_lm):
    import onnxruntime as ort

    ref = ort.InferenceSession(str(causal_lm["fp32"] / "model.onnx"), providers=["CPUExecutionProvider"])
    with api.load(causal_lm["npu"], backend="qnn") as runner:
        assert runner.context_length == 32
        ids = runner.tokenize("The library was quiet except for the turning of pages.")
        lp = runner.logprobs(ids)
        pad = 32 - len(ids)
        logits = ref.run(None, {"input_ids": np.array([ids + [0] * pad]),
                                "attention_mask": np.array([[1] * len(ids) + [0] * pad])})[0][0]
    logits = logits[: len(ids)].astype(np.float64)
    logits -= logits.max(axis=1, keepdims=True)
    ref_lp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    nll = -np.mean([lp[i, ids[i + 1]] for i in range(len(ids) - 1)])
    ref_nll = -np.mean([ref_lp[i, ids[i + 1]] for i in range(len(ids) - 1)])
    assert abs(nll - ref_nll) / ref_nll < 0.02, (nll, ref_nll)
