"""The architecture matrix on OpenVINO: each architecture's float32 IR held to
transformers (top-1, KL, greedy tokens, tokenizer), and opened by openvino-genai.

OpenVINO's CPU plugin runs in bf16 where the CPU has it: the IR is compiled
with ``inference_precision=f32`` so the comparison is of the conversion, not
of the execution precision (the measured bf16 gap is in docs/models.md)."""

from __future__ import annotations

import pytest

from edgesmith import api
from edgesmith.testing.archs import ARCHITECTURES
from edgesmith.testing.fidelity import compare, record
from edgesmith.testing.vendor import check_loads

#: Cells where one check is known to fail, with why; asserted to fail exactly so
#: (a fix upstream makes the test fail, and the entry goes).
KNOWN = {
    "gemma3": ("greedy", "openvino-genai's cached decoding of the optimum-intel 2.2.0 Gemma 3 IR leaves "
                         "transformers' greedy tokens after 13 of 20 (prompt as long as the 48-token sliding "
                         "window); full-sequence scores agree to KL 3e-10, and transformers with and without "
                         "its cache agree"),
}


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_fp32_ir_scores_and_generates_like_transformers(arch, arch_model, tmp_path):
    pytest.importorskip("optimum.intel", reason="Hugging Face export needs optimum-intel")
    src = arch_model(arch)
    ir = api.convert(src, "openvino", tmp_path / "ir", backend="openvino", dtype="fp32").path
    blob = api.compile(ir, "cpu", tmp_path / "cpu", backend="openvino", options={"inference_precision": "f32"}).path
    with api.load(blob, backend="openvino") as runner:
        result = compare(src, runner, label=f"{arch} / openvino fp32")
    record(result)
    print(result.row())
    if arch in KNOWN:
        check, _why = KNOWN[arch]
        assert not result.failures(greedy=check != "greedy"), "; ".join(result.failures())
        assert result.failures(), f"{arch}: the known {check} failure is gone; drop it from KNOWN"
    else:
        assert not result.failures(), "; ".join(result.failures())
    assert check_loads(ir, "openvino", "openvino") == "openvino_genai.LLMPipeline"
