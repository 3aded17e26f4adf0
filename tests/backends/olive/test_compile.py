"""Ahead-of-time ONNX Runtime optimization: same tokens, saved session options, no slower to load."""

from __future__ import annotations

import json

import pytest

from edgesmith import api
from edgesmith.types import RunRequest

pytest.importorskip("olive", reason="edgesmith-olive's stack (olive-ai) is not installed")
pytest.importorskip("onnxruntime_genai", reason="onnxruntime-genai is not installed")


def test_compile_cpu(bundles, tmp_path):
    src = bundles("qwen2", "int4")
    out = api.compile(src, "cpu", tmp_path / "compiled", backend="olive", options={"measure": "true"})
    cfg = json.loads((out.path / "genai_config.json").read_text())
    assert cfg["model"]["decoder"]["session_options"]["graph_optimization_level"] == "ORT_DISABLE_ALL"
    details = json.loads((out.path / "edgesmith.json").read_text())["details"]
    assert details["optimization_level"] == "ORT_ENABLE_EXTENDED"
    load = details["load_ms"]
    print(f"load ms: source {load['source']}, compiled {load['compiled']}")
    # Loading must not be slower; generous slack for a shared 2-core machine.
    assert load["compiled"] <= load["source"] * 1.5 + 20

    req = RunRequest(prompt="The morning train", max_tokens=8)
    with api.load(src, backend="olive") as a, api.load(out.path, backend="olive") as b:
        assert a.generate(req).token_ids == b.generate(req).token_ids
        ids = a.tokenize("The library was quiet.")
        assert abs(a.logprobs(ids) - b.logprobs(ids)).max() < 1e-3


def test_compile_for_another_device_is_refused(bundles, tmp_path):
    """The core refuses a device the compile operation does not declare, before any work."""
    from edgesmith.errors import UnsupportedError

    out = tmp_path / "npu"
    with pytest.raises(UnsupportedError, match="cannot compile onnx for npu: olive compile onnx compiles for cpu"):
        api.compile(bundles("llama", "onnx"), "npu", out, backend="olive")
    assert not out.exists()
