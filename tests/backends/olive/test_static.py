"""Static QDQ (a8w8, a16w8) of an ONNX encoder that is not an LLM, run through ``infer``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from edgesmith import api
from edgesmith.errors import UserError

pytest.importorskip("olive", reason="edgesmith-olive's stack (olive-ai) is not installed")
onnx = pytest.importorskip("onnx")

D, H, SEQ = 32, 64, 16


def make_encoder(path) -> None:
    """A transformer-style block: MLP with a residual and LayerNorm, dynamic batch."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)

    def w(name, *shape, scale=0.2):
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)

    inits = [w("W1", D, H), w("b1", H, scale=0.05), w("W2", H, D), w("b2", D, scale=0.05),
             numpy_helper.from_array(np.ones(D, np.float32), "gamma"),
             numpy_helper.from_array(np.zeros(D, np.float32), "beta")]
    nodes = [
        helper.make_node("MatMul", ["x", "W1"], ["h1"]),
        helper.make_node("Add", ["h1", "b1"], ["h2"]),
        helper.make_node("Relu", ["h2"], ["h3"]),
        helper.make_node("MatMul", ["h3", "W2"], ["h4"]),
        helper.make_node("Add", ["h4", "b2"], ["h5"]),
        helper.make_node("Add", ["h5", "x"], ["h6"]),
        helper.make_node("LayerNormalization", ["h6", "gamma", "beta"], ["y"], axis=-1),
    ]
    graph = helper.make_graph(nodes, "encoder",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", SEQ, D])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", SEQ, D])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    path.mkdir()
    onnx.save(model, str(path / "model.onnx"))


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    root = tmp_path_factory.mktemp("encoder")
    make_encoder(root / "fp32")
    calib = root / "calib"
    calib.mkdir()
    rng = np.random.default_rng(1)
    np.save(calib / "x.npy", rng.standard_normal((16, 1, SEQ, D)).astype(np.float32))  # 16 samples
    np.save(root / "test_x.npy", rng.standard_normal((2, SEQ, D)).astype(np.float32))
    return root


def cosine(a, b) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


@pytest.mark.parametrize("act", [8, 16])
def test_static_qdq_infer(encoder, tmp_path, act, monkeypatch):
    # A model.onnx.data in the working directory must not get in the way (onnx checks
    # external-data names against the working directory).
    (tmp_path / "model.onnx.data").write_bytes(b"unrelated")
    monkeypatch.chdir(tmp_path)
    out = api.quantize(encoder / "fp32", tmp_path / "q", bits=8, activation_bits=act,
                       calibration=encoder / "calib", backend="olive")
    ops = [n.op_type for n in onnx.load(str(out.path / "model.onnx")).graph.node]
    assert ops.count("QuantizeLinear") >= 3 and ops.count("DequantizeLinear") >= 5, ops
    manifest = json.loads((out.path / "edgesmith.json").read_text())
    details = manifest["details"]
    assert details["activation_bits"] == act and details["calibration"]["samples"] == 16
    assert details["olive_passes"] == ["OnnxStaticQuantization"]
    assert (out.path / "olive_calibration.py").is_file()
    x = np.load(encoder / "test_x.npy")
    with api.load(encoder / "fp32", backend="olive") as runner:
        ref = runner.infer({"x": x})["y"]
    with api.load(out.path, backend="olive") as runner:
        got = runner.infer({"x": x.astype(np.float64)})["y"]  # float64 is cast to the input's float32
    assert got.shape == ref.shape
    assert cosine(got, ref) >= (0.98 if act == 8 else 0.999), cosine(got, ref)


def test_cli_quantize_and_run_input(encoder, tmp_path, network_attempts):
    from edgesmith.cli import main

    cli = CliRunner()
    q = tmp_path / "q"
    res = cli.invoke(main, ["quantize", str(encoder / "fp32"), "--bits", "8", "--activation-bits", "8",
                            "--calibration", str(encoder / "calib"), "-o", str(q), "--backend", "olive"])
    assert res.exit_code == 0, res.output
    saved = tmp_path / "outs"
    res = cli.invoke(main, ["run", str(q), "--input", f"x={encoder / 'test_x.npy'}", "--save-outputs",
                            str(saved), "--backend", "olive"])
    assert res.exit_code == 0, res.output
    assert np.load(saved / "y.npy").shape == (2, SEQ, D)
    bad = cli.invoke(main, ["run", str(q), "-p", "hello", "--backend", "olive"])
    assert bad.exit_code == 2 and "--input x=FILE.npy" in bad.output
    assert network_attempts == []


@pytest.mark.parametrize(("word", "per_channel"), [("yes", True), ("off", False)])
def test_cli_static_options(word, per_channel, encoder, tmp_path):
    from edgesmith.cli import main

    def call(*options: str):
        args = ["quantize", str(encoder / "fp32"), "--bits", "8", "--activation-bits", "8", "--calibration",
                str(encoder / "calib"), "-o", str(tmp_path / "q"), "--backend", "olive"]
        res = CliRunner().invoke(main, args + [a for o in options for a in ("-O", o)])
        return res, [line for line in res.stderr.splitlines() if line.startswith("edgesmith: error:")]

    for option, words in (("per_channel=maybe", ("per_channel=maybe", "true or false")),
                          ("samples=0", ("samples=0", "1 to 100000")),
                          ("accuracy_level=4", ("'accuracy_level'", "known options: activation_type"))):
        res, errors = call(option)
        assert res.exit_code == 2 and len(errors) == 1, res.output
        assert "olive quantize onnx (static)" in errors[0] and all(w in errors[0] for w in words), errors[0]
    res, errors = call(f"per_channel={word}", "calibrate_method=Entropy", "samples=4")
    assert res.exit_code == 0, res.output
    details = json.loads((tmp_path / "q" / "edgesmith.json").read_text())["details"]
    assert details["per_channel"] is per_channel and details["calibrate_method"] == "Entropy"
    assert details["calibration"]["samples"] == 4


def test_olive_config_reproduces(encoder, tmp_path, clean_env):
    """olive_config.json + olive_calibration.py, copied to an empty folder, give the same model."""
    import shutil
    import subprocess
    import sys

    out = api.quantize(encoder / "fp32", tmp_path / "q", bits=8, activation_bits=8,
                       calibration=encoder / "calib", backend="olive")
    rerun = tmp_path / "rerun"
    rerun.mkdir()
    for name in ("olive_config.json", "olive_calibration.py"):
        shutil.copyfile(out.path / name, rerun / name)
    assert "empty folder" in out.details["reproduce"]
    # Olive's own CLI in a fresh process; CI=1 keeps its telemetry off (see docs).
    res = subprocess.run([sys.executable, "-m", "olive", "run", "--config", "olive_config.json"], cwd=rerun,
                         env={**clean_env, "CI": "1"}, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-1500:]
    assert (rerun / "olive-output" / "model.onnx").read_bytes() == (out.path / "model.onnx").read_bytes()


def test_calibration_must_match_inputs(encoder, tmp_path):
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    np.save(wrong / "input_ids.npy", np.zeros((4, SEQ), np.int64))
    shaped = tmp_path / "shaped"
    shaped.mkdir()
    np.save(shaped / "x.npy", np.zeros((4, SEQ, D + 1), np.float32))
    out = tmp_path / "out"
    for calib, words in ((wrong, "does not match the model: no file for input"),
                         (shaped, "has shape"),
                         (tmp_path / "missing", "does not exist")):
        with pytest.raises(UserError, match=words) as info:
            api.quantize(encoder / "fp32", out, bits=8, activation_bits=8, calibration=calib, backend="olive")
        assert "\n" not in str(info.value)
        assert not out.exists()
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]
    with pytest.raises(UserError, match="--activation-bits"):
        api.quantize(encoder / "fp32", out, bits=8, backend="olive")
    with pytest.raises(UserError, match="missing input x"):
        with api.load(encoder / "fp32", backend="olive") as runner:
            runner.infer({"y": np.zeros((1, SEQ, D), np.float32)})
