"""The architecture matrix on OpenVINO: each architecture's float32 IR held to
transformers (top-1, KL, greedy tokens, tokenizer), and opened by openvino-genai.

OpenVINO's CPU plugin runs in bf16 where the CPU has it and keeps an LLM's
KV cache compressed: the IR is compiled with ``inference_precision=f32`` and
``kv_cache_precision=f32`` so the comparison is of the conversion, not of the
execution precision (the gaps at the defaults are in docs/models.md)."""

from __future__ import annotations

import pytest

from edgesmith import api
from edgesmith.testing.archs import ARCHITECTURES
from edgesmith.testing.fidelity import compare, record
from edgesmith.testing.vendor import check_loads

#: Full precision: f32 execution, f32 keys and values.
FULL = {"inference_precision": "f32", "kv_cache_precision": "f32"}


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_fp32_ir_scores_and_generates_like_transformers(arch, arch_model, tmp_path):
    pytest.importorskip("optimum.intel", reason="Hugging Face export needs optimum-intel")
    src = arch_model(arch)
    ir = api.convert(src, "openvino", tmp_path / "ir", backend="openvino", dtype="fp32").path
    blob = api.compile(ir, "cpu", tmp_path / "cpu", backend="openvino", options=FULL).path
    with api.load(blob, backend="openvino") as runner:
        result = compare(src, runner, label=f"{arch} / openvino fp32")
    record(result)
    print(result.row())
    assert not result.failures(), "; ".join(result.failures())
    assert check_loads(ir, "openvino", "openvino") == "openvino_genai.LLMPipeline"
