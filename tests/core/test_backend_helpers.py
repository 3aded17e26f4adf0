"""The helpers every backend shares: calibration data, graph inputs, LM feeds,
log-softmax, ONNX dtypes, the array-only runner base and the core count."""

from __future__ import annotations

import os

import numpy as np
import pytest

from edgesmith import calibration
from edgesmith.errors import UnsupportedError, UserError
from edgesmith.graphinputs import check_inputs, dims_of
from edgesmith.graphrunner import GraphRunner
from edgesmith.lmfeed import lm_feed
from edgesmith.logsoftmax import log_softmax
from edgesmith.onnxtypes import onnx_dtype, ort_dtype
from edgesmith.runner import Runner
from edgesmith.types import RunRequest
from edgesmith.util import physical_cores

SPECS = {"x": ((None, 4), np.dtype("float32")), "ids": ((1, None), np.dtype("int64"))}


def test_text_is_one_rule_for_files_and_directories(tmp_path):
    (tmp_path / "b.txt").write_text("second\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.md").write_text("  third  \n\n")
    (tmp_path / "a.txt").write_text("first\n")
    (tmp_path / "skip.json").write_text("{}")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "x.txt").write_text("never")
    assert calibration.read_text(tmp_path / "a.txt") == "first\n"
    assert calibration.read_text(tmp_path) == "first\n\n\nsecond\n\n\n  third  \n\n"
    assert calibration.text_lines(tmp_path) == ["first", "second", "third"]


@pytest.mark.parametrize(("make", "words"), [
    (lambda p: p.mkdir(), "holds no .txt or .md files"),
    (lambda p: p.write_bytes(b"\xff\xfe\x00bad"), "is not UTF-8 text"),
    (lambda p: p.write_text(" \n\n"), "holds no text"),
    (lambda p: None, "does not exist"),
])
def test_text_refusals_are_one_line(tmp_path, make, words):
    path = tmp_path / "cal"
    make(path)
    with pytest.raises(UserError, match=words) as info:
        calibration.read_text(path)
    assert "\n" not in str(info.value)


def test_arrays_one_npy_per_input_single_or_stacked(tmp_path):
    np.save(tmp_path / "x.npy", np.ones((3, 2, 4)))  # 3 samples of [2, 4], float64 -> float32
    np.save(tmp_path / "ids.npy", np.arange(15, dtype=np.int32).reshape(3, 1, 5))
    samples = calibration.array_samples(tmp_path, SPECS)
    assert len(samples) == 3 and samples[0]["x"].dtype == np.float32 and samples[2]["ids"].shape == (1, 5)
    assert samples[1]["ids"].dtype == np.int64
    assert len(calibration.array_samples(tmp_path, SPECS, limit=2)) == 2
    np.save(tmp_path / "x.npy", np.ones((2, 4), np.float32))  # one sample
    np.save(tmp_path / "ids.npy", np.zeros((1, 5), np.int64))
    assert calibration.array_stacks(tmp_path, SPECS, mmap=True)[1] == 1


@pytest.mark.parametrize(("x", "ids", "words"), [
    (np.ones((2, 5)), np.zeros((1, 5), np.int64), r"x.npy has shape \[2, 5\] but input 'x' takes \[\?, 4\]"),
    (np.ones((2, 4)), np.zeros((1, 5), np.float32), "ids.npy holds float32 but input 'ids' is int64"),
    (np.ones((3, 2, 4)), np.zeros((2, 1, 5), np.int64), "different sample counts"),
])
def test_array_refusals(tmp_path, x, ids, words):
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "ids.npy", ids)
    with pytest.raises(UserError, match=words):
        calibration.array_samples(tmp_path, SPECS)
    (tmp_path / "ids.npy").unlink()
    with pytest.raises(UserError, match="no file for input"):
        calibration.array_samples(tmp_path, SPECS)
    with pytest.raises(UserError, match="is not a directory"):
        calibration.array_samples(tmp_path / "x.npy", SPECS)


def test_check_inputs_names_shapes_and_kinds():
    feed = check_inputs({"x": np.ones((7, 4)), "ids": [[1, 2]]}, SPECS)
    assert list(feed) == ["x", "ids"] and feed["x"].dtype == np.float32 and feed["ids"].dtype == np.int64
    cases = [({"x": np.ones((1, 4))}, "missing input ids"),
             ({"x": np.ones((1, 4)), "ids": [[1]], "z": 0}, "unknown input z"),
             ({"x": np.ones((1, 5)), "ids": [[1]]}, r"input x has shape \[1, 5\] but the model takes \[\?, 4\]"),
             ({"x": np.ones((1, 4), np.int64), "ids": [[1]]}, "input x is int64 but the model takes float32")]
    for inputs, words in cases:
        with pytest.raises(UserError, match=words):
            check_inputs(inputs, SPECS)
    assert dims_of([1, "seq", None, 3]) == (1, None, None, 3) and dims_of(None) is None


def test_lm_feed():
    feed = lm_feed([5, 6], ["attention_mask", "position_ids", "beam_idx", "past.0"])
    assert set(feed) == {"input_ids", "attention_mask", "position_ids", "beam_idx"}
    assert feed["input_ids"].tolist() == [[5, 6]] and feed["beam_idx"].dtype == np.int32
    padded = lm_feed([5, 6], ["attention_mask", "token_type_ids"], width=4, pad_id=9, type_ids=[1, 1],
                     dtypes={"attention_mask": np.int32})
    assert padded["input_ids"].tolist() == [[5, 6, 9, 9]]
    assert padded["attention_mask"].tolist() == [[1, 1, 0, 0]] and padded["attention_mask"].dtype == np.int32
    assert padded["token_type_ids"].tolist() == [[1, 1, 0, 0]]


def test_log_softmax_is_stable_and_typed():
    out = log_softmax(np.array([[1000.0, 0.0], [1.0, 1.0]]))
    assert out.dtype == np.float32 and np.allclose(np.exp(out).sum(-1), 1) and out[0, 0] == 0
    assert log_softmax([[0.0, 0.0]], dtype=np.float64).dtype == np.float64


def test_onnx_types():
    assert ort_dtype("tensor(float16)") == np.float16 and ort_dtype("tensor(string)") is None
    assert onnx_dtype(7) == np.int64 and onnx_dtype(99, np.float32) == np.float32


class _Graph(GraphRunner):
    backend = "demo"
    input_specs = SPECS

    def run_graph(self, feed):
        return {"y": feed["x"] * 2}


def test_graph_runner_has_no_text_methods_to_fake():
    r = _Graph()
    assert r.infer({"x": np.ones((1, 4)), "ids": [[1]]})["y"].dtype == np.float32
    for call in (lambda: r.generate(RunRequest(prompt="hi")), lambda: r.tokenize("hi"),
                 lambda: r.logprobs([1]), lambda: r.chat_prompt([])):
        with pytest.raises(UnsupportedError, match="--input x=FILE.npy --input ids=FILE.npy"):
            call()
    with pytest.raises(UnsupportedError, match="on arrays, not text"):
        Runner().stream_tokens([1], RunRequest(prompt="hi"))


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="no CPU affinity here")
def test_physical_cores_respect_affinity(monkeypatch):
    assert 1 <= physical_cores() <= len(os.sched_getaffinity(0))
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert physical_cores() == 1
