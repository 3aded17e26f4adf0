"""Ahead-of-time compile for CPU: blob + genai cache, reused by the runner."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgesmith import api
from edgesmith.errors import UserError
from edgesmith.types import RunRequest


def test_compile_cpu_writes_blob_and_runs(ov_int4, tmp_path: Path) -> None:
    out = tmp_path / "compiled"
    art = api.compile(ov_int4("llama"), "cpu", out, backend="openvino",
                      options={"performance_hint": "latency", "genai_cache": "true"})
    info = json.loads((out / "openvino_compiled.json").read_text())
    assert info["device"] == "cpu" and info["properties"]["PERFORMANCE_HINT"] == "LATENCY"
    assert (out / "openvino_model.blob").stat().st_size > 0
    assert any((out / "model_cache").iterdir()), "openvino-genai's cache was not filled"
    d = art.details
    assert 0 < d["load_from_blob_s"] < d["compile_from_ir_s"], d
    assert api.inspect(out)["compiled_blob"] is True
    # The folder still runs after a move: nothing in it names its own path.
    moved = tmp_path / "moved"
    shutil.move(out, moved)
    req = RunRequest(prompt="The morning train", max_tokens=4)
    with api.load(moved, backend="openvino") as runner:
        assert runner.from_blob, "the runner should import the blob compiled for cpu"
        ids = runner.tokenize("The morning train left")
        compiled_lp = runner.logprobs(ids)
        compiled_tokens = runner.generate(req).token_ids
    with api.load(ov_int4("llama"), backend="openvino") as runner:
        plain_lp = runner.logprobs(ids)
        plain_tokens = runner.generate(req).token_ids
    assert compiled_tokens == plain_tokens
    np.testing.assert_allclose(compiled_lp, plain_lp, atol=1e-3)


@pytest.mark.parametrize("device", ["gpu", "npu"])
def test_missing_device_lists_what_openvino_sees(ov_int4, tmp_path: Path, device: str) -> None:
    import openvino as ov

    if any(d.lower().startswith(device) for d in ov.Core().available_devices):
        pytest.skip(f"this machine has a {device}")
    out = tmp_path / "c"
    with pytest.raises(UserError, match="available: CPU") as info:
        api.compile(ov_int4("llama"), device, out, backend="openvino")
    assert "\n" not in str(info.value)
    assert not out.exists() and not list(tmp_path.glob(".c*"))


def test_cpu_compile_skips_genai_cache_by_default(ov_int4, tmp_path: Path) -> None:
    api.compile(ov_int4("qwen2"), "cpu", tmp_path / "c", backend="openvino")
    assert (tmp_path / "c" / "openvino_model.blob").is_file()
    assert not (tmp_path / "c" / "model_cache").exists()
    with api.load(tmp_path / "c", backend="openvino") as runner:
        assert runner.generate(RunRequest(prompt="Rain came", max_tokens=2)).generated_tokens >= 1


def test_compile_rejects_npu_options_for_cpu(ov_int4, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="NPU only"):
        api.compile(ov_int4("llama"), "cpu", tmp_path / "c", backend="openvino",
                    options={"max_prompt_len": "256"})
