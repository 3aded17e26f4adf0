"""Architectures declared per operation: a model is refused before any heavy
work, with the reason, by dispatch, inspect and optimize's plan."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgesmith import api
from edgesmith.architectures import model_type, refusal
from edgesmith.dispatch import choose
from edgesmith.errors import UnsupportedError
from edgesmith.formats import detect
from edgesmith.optimize.plan import build
from edgesmith.optimize.targets import Candidate, Target
from edgesmith.plugins import BackendManager, BackendRecord, reset_manager
from edgesmith.types import BackendInfo, Operation

TEXT_LMS = ("llama", "qwen2", "qwen3", "gemma3_text", "phi3")
WHY = "onnxruntime-genai 0.11.4's builder has no Gemma 3 text; use --target portable (llama.cpp)"


def _info(name: str, fmt: str, unsupported=None) -> BackendInfo:
    return BackendInfo(name, "1", operations=[
        Operation("convert", "hf", "x.y:z", format=fmt, architectures=TEXT_LMS if not unsupported else
                  tuple(a for a in TEXT_LMS if a not in unsupported), unsupported=unsupported or {}),
        Operation("quantize", fmt, "x.y:z"),
        Operation("load", fmt, "x.y:z"),
    ])


def _checkpoint(tmp_path: Path, model_type_: str) -> Path:
    d = tmp_path / model_type_
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"model_type": model_type_, "architectures": ["X"]}))
    import numpy as np
    from safetensors.numpy import save_file

    save_file({"w": np.zeros((2, 2), dtype=np.float32)}, str(d / "model.safetensors"))
    return d


def test_model_type_from_config_and_gguf(tmp_path, tiny_model):
    assert model_type(detect(tiny_model("qwen2"))) == "qwen2"
    assert model_type(detect(_checkpoint(tmp_path, "bert"))) == "bert"
    gguf = pytest.importorskip("gguf")
    w = gguf.GGUFWriter(str(tmp_path / "g.gguf"), "gemma3")
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.close()
    assert model_type(detect(tmp_path / "g.gguf")) == "gemma3_text"  # GGUF's name, in the one vocabulary


def test_refusal_names_the_reason_and_what_takes_it():
    op = _info("olive", "onnx", {"gemma3_text": WHY}).operations[0]
    assert refusal(op, "llama") is None and refusal(op, None) is None
    assert refusal(op, "gemma3_text") == f"convert hf->onnx does not take gemma3_text models ({WHY})"
    assert "it takes llama, qwen2, qwen3, phi3" in refusal(op, "bert")
    assert refusal(Operation("load", "onnx", "x.y:z"), "bert") is None  # undeclared: no restriction


def _manager(*infos: BackendInfo) -> BackendManager:
    m = BackendManager()
    for info in infos:
        m.records[info.name] = BackendRecord(info.name, "available", None, info)
    return m


def test_dispatch_refuses_before_any_work():
    m = _manager(_info("llamacpp", "gguf"))
    assert choose(m, "convert", "hf", fmt="gguf", architecture="qwen3").name == "llamacpp"
    with pytest.raises(UnsupportedError, match="llamacpp convert hf->gguf does not take bert models"):
        choose(m, "convert", "hf", fmt="gguf", architecture="bert")


def test_inspect_lists_who_takes_the_architecture(tmp_path):
    reset_manager(_manager(_info("llamacpp", "gguf"), _info("olive", "onnx", {"gemma3_text": WHY})))
    try:
        bert = api.inspect(_checkpoint(tmp_path, "bert"))
        assert bert["model_type"] == "bert" and bert["backends"] == {}
        assert set(bert["refused"]) == {"llamacpp", "olive"}
        gemma = api.inspect(_checkpoint(tmp_path, "gemma3_text"))
        assert set(gemma["backends"]) == {"llamacpp"} and WHY in gemma["refused"]["olive"][0]
    finally:
        reset_manager()


def test_optimize_refuses_a_target_before_building_with_the_reason():
    infos = [_info("llamacpp", "gguf"), _info("olive", "onnx", {"gemma3_text": WHY})]
    records = {i.name: BackendRecord(i.name, "available", None, i) for i in infos}
    known = {t.name: t for t in (
        Target("portable", "any CPU", "cpu", ("llamacpp",), "gguf", {}, (Candidate("Q8_0", scheme="Q8_0"),)),
        Target("nvidia-gpu", "NVIDIA", "gpu", ("olive",), "onnx", {}, (Candidate("int8", bits=8),)),
    )}
    plan = build(Path("/m"), "hf", ["portable", "nvidia-gpu"], known, records, None, architecture="gemma3_text")
    by = {t.name: t for t in plan.targets}
    assert by["portable"].backend == "llamacpp" and not by["portable"].skipped
    assert by["nvidia-gpu"].backend is None and by["nvidia-gpu"].skipped == \
        f"olive convert hf->onnx does not take gemma3_text models ({WHY})"
    # Nothing of the refused target is in the plan's steps.
    assert all(s.backend != "olive" for s in plan.steps.values())
