"""An ONNX encoder through edgesmith: convert -> INT8 PTQ -> run (API and CLI),
compared with the fp32 model run by the plain OpenVINO runtime."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgesmith import api
from edgesmith.errors import UnsupportedError, UserError
from edgesmith.types import RunRequest


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _sample(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {"features": rng.standard_normal((1, 16, 64)).astype(np.float32),
            "bias_in": (0.1 * rng.standard_normal((1, 16, 64))).astype(np.float32)}


@pytest.fixture(scope="module")
def encoder(tiny_encoder, tmp_path_factory) -> dict[str, Path]:
    """The tiny ONNX encoder converted to fp32 IR and INT8-PTQ'd from 20 samples."""
    root = tmp_path_factory.mktemp("ov-encoder")
    onnx_path = tiny_encoder(root / "enc" / "model.onnx")
    ir = api.convert(onnx_path.parent, "openvino", root / "ir", backend="openvino")
    assert set(ir.details["inputs"]) == {"features", "bias_in"}
    assert ir.details["outputs"] == ["embeddings"]
    rng = np.random.default_rng(1)
    cal = root / "calibration"
    cal.mkdir()
    samples = [_sample(rng) for _ in range(20)]
    for name in ("features", "bias_in"):  # one NAME.npy per input: 20 samples stacked
        np.save(cal / f"{name}.npy", np.stack([s[name] for s in samples]))
    q = api.quantize(root / "ir", root / "int8", scheme="int8_ptq", calibration=cal,
                     backend="openvino")
    assert q.details["mode"] == "int8_ptq" and q.details["calibration_samples"] == 20
    return {"root": root, "ir": root / "ir", "int8": root / "int8"}


def _fp32_reference(ir: Path):
    import openvino as ov

    return ov.Core().compile_model(str(ir / "openvino_model.xml"), "CPU")


def test_ptq_output_is_int8_with_the_same_inputs(encoder) -> None:
    import openvino as ov

    model = ov.Core().read_model(str(encoder["int8"] / "openvino_model.xml"))
    assert any(op.get_type_name() == "FakeQuantize" for op in model.get_ops())
    assert [i.get_any_name() for i in model.inputs] == ["features", "bias_in"]


def test_api_load_infer_matches_fp32(encoder) -> None:
    fp32 = _fp32_reference(encoder["ir"])
    rng = np.random.default_rng(7)
    sims = []
    with api.load(encoder["int8"], backend="openvino") as runner:
        assert runner.backend == "openvino" and runner.load_s is not None
        for _ in range(5):
            feed = _sample(rng)
            out = runner.infer(feed)
            assert set(out) == {"embeddings"} and out["embeddings"].shape == (1, 16, 64)
            sims.append(_cosine(fp32(feed)["embeddings"], out["embeddings"]))
    assert min(sims) >= 0.99, sims
    # The fp32 IR through edgesmith is the reference itself.
    feed = _sample(rng)
    with api.load(encoder["ir"], backend="openvino") as runner:
        np.testing.assert_allclose(runner.infer(feed)["embeddings"], fp32(feed)["embeddings"],
                                   rtol=1e-5, atol=1e-5)


def cli(*args: str):
    # In process (click's runner): the stack is already imported, so this stays quick.
    from click.testing import CliRunner

    from edgesmith.cli import main

    return CliRunner().invoke(main, [str(a) for a in args])


def test_cli_run_with_input_arrays(encoder, tmp_path: Path) -> None:
    feed = _sample(np.random.default_rng(11))
    # float64 files are cast to the model's f32 inputs.
    np.save(tmp_path / "features.npy", feed["features"].astype(np.float64))
    np.save(tmp_path / "bias_in.npy", feed["bias_in"])
    done = cli("run", str(encoder["int8"]), "--input", f"features={tmp_path / 'features.npy'}",
               "--input", f"bias_in={tmp_path / 'bias_in.npy'}", "--save-outputs", str(tmp_path / "out"),
               "-b", "openvino", "--json")
    assert done.exit_code == 0, done.output[-2000:]
    summary = json.loads(done.stdout)
    assert summary["backend"] == "openvino"
    assert summary["outputs"] == {"embeddings": {"shape": [1, 16, 64], "dtype": "float32"}}
    got = np.load(tmp_path / "out" / "embeddings.npy")
    assert _cosine(_fp32_reference(encoder["ir"])(feed)["embeddings"], got) >= 0.99


def test_cli_prompt_on_an_encoder_is_one_line(encoder) -> None:
    done = cli("run", str(encoder["int8"]), "-p", "hello", "-b", "openvino")
    assert done.exit_code == 2, done.output[-2000:]
    errors = [ln for ln in done.output.splitlines() if ln.startswith("edgesmith: error:")]
    assert len(errors) == 1 and "--input" in errors[0], done.output
    assert "Traceback" not in done.output


def test_bad_inputs_are_user_errors(encoder) -> None:
    feed = _sample(np.random.default_rng(3))
    with api.load(encoder["int8"], backend="openvino") as runner:
        with pytest.raises(UnsupportedError, match="--input"):
            runner.generate(RunRequest(prompt="hello"))
        with pytest.raises(UserError, match="missing input bias_in"):
            runner.infer({"features": feed["features"]})
        with pytest.raises(UserError, match="unknown input extra"):
            runner.infer({**feed, "extra": feed["features"]})
        with pytest.raises(UserError, match="takes float32"):
            runner.infer({**feed, "features": feed["features"].astype(np.int64)})
        with pytest.raises(UserError, match=r"has shape \[1, 16, 32\] but the model takes"):
            runner.infer({**feed, "features": feed["features"][:, :, :32]})
    import openvino as ov

    if not any(d.startswith("NPU") for d in ov.Core().available_devices):
        with pytest.raises(UserError, match="available: CPU"):
            api.load(encoder["int8"], backend="openvino", options={"device": "npu"})


def test_compiled_encoder_runs_from_the_blob(encoder, tmp_path: Path) -> None:
    art = api.compile(encoder["int8"], "cpu", tmp_path / "cpu", backend="openvino")
    assert (tmp_path / "cpu" / art.details["blob"]).is_file()
    feed = _sample(np.random.default_rng(5))
    with api.load(tmp_path / "cpu", backend="openvino") as runner:
        assert runner.from_blob
        out = runner.infer(feed)["embeddings"]
    assert _cosine(_fp32_reference(encoder["ir"])(feed)["embeddings"], out) >= 0.99


def test_text_calibration_through_the_tokenizer(text_encoder, tmp_path: Path) -> None:
    from importlib import resources

    from tokenizers import Tokenizer

    src = text_encoder(tmp_path / "enc")
    ir = api.convert(src, "openvino", tmp_path / "ir", backend="openvino")
    assert "tokenizer.json" in ir.details["side_files"]
    assert (tmp_path / "ir" / "tokenizer.json").is_file()
    corpus = resources.files("edgesmith").joinpath("data/tiny_corpus.txt").read_text()
    lines = [s.strip() for s in corpus.replace("\n", " ").split(". ") if s.strip()]
    assert len(lines) >= 30
    cal = tmp_path / "calibration.txt"
    cal.write_text("\n".join(lines[:24]) + "\n\n")
    q = api.quantize(tmp_path / "ir", tmp_path / "int8", scheme="int8_ptq", calibration=cal,
                     backend="openvino", options={"max_length": "32"})
    d = q.details
    assert d["calibration"] == "text" and d["calibration_samples"] == 24 and d["max_length"] == 32
    assert (tmp_path / "int8" / "tokenizer.json").is_file()
    import openvino as ov

    quantized = ov.Core().read_model(str(tmp_path / "int8" / "openvino_model.xml"))
    assert any(op.get_type_name() == "FakeQuantize" for op in quantized.get_ops())

    tok = Tokenizer.from_file(str(src / "tokenizer.json"))
    fp32 = _fp32_reference(tmp_path / "ir")
    sims = []
    with api.load(tmp_path / "int8", backend="openvino") as runner:
        for text in lines[25:30]:
            ids = np.asarray([tok.encode(text).ids[:32]], dtype=np.int64)
            feed = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
            sims.append(_cosine(fp32(feed)["last_hidden_state"], runner.infer(feed)["last_hidden_state"]))
    assert len(sims) == 5 and min(sims) >= 0.99, sims


def test_text_calibration_errors(text_encoder, tiny_encoder, tmp_path: Path) -> None:
    src = text_encoder(tmp_path / "enc")
    api.convert(src, "openvino", tmp_path / "ir", backend="openvino")
    cal = tmp_path / "calibration.txt"
    cal.write_text("one line of text\n")
    (tmp_path / "ir" / "tokenizer.json").unlink()
    with pytest.raises(UserError, match="no tokenizer.json"):
        api.quantize(tmp_path / "ir", tmp_path / "q", scheme="int8_ptq", calibration=cal,
                     backend="openvino")
    # The tokenizer can be named instead.
    art = api.quantize(tmp_path / "ir", tmp_path / "q", scheme="int8_ptq", calibration=cal,
                       backend="openvino", options={"tokenizer": str(src)})
    assert art.details["calibration_samples"] == 1
    # An encoder without input_ids cannot calibrate from text.
    onnx_path = tiny_encoder(tmp_path / "feat" / "model.onnx")
    api.convert(onnx_path.parent, "openvino", tmp_path / "feat-ir", backend="openvino")
    with pytest.raises(UserError, match="no input_ids"):
        api.quantize(tmp_path / "feat-ir", tmp_path / "q2", scheme="int8_ptq", calibration=cal,
                     backend="openvino")
    assert not (tmp_path / "q2").exists()
