"""The shared backend checks, on a tiny llama: quantize fp32 bundle -> int4."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from edgesmith import api
from edgesmith.testing.conformance import BackendConformance

pytest.importorskip("olive", reason="edgesmith-olive's stack (olive-ai) is not installed")
pytest.importorskip("onnxruntime_genai", reason="onnxruntime-genai is not installed")


class TestOliveConformance(BackendConformance):
    backend = "olive"
    operation = "quantize"
    op_kwargs = {"bits": 4}

    @pytest.fixture(scope="class")
    @classmethod
    def source(cls, bundles):
        return bundles("llama", "onnx")

    @pytest.fixture(scope="class")
    @classmethod
    def runnable(cls, bundles):
        return bundles("llama", "int4")

    def bad_inputs(self, tmp_path: Path):
        fp32 = self._fp32
        int4 = self._int4
        no_genai = tmp_path / "no-genai"
        no_genai.mkdir()
        shutil.copyfile(fp32 / "model.onnx", no_genai / "model.onnx")
        return [
            ("unknown option", lambda o: api.quantize(fp32, o, bits=4, backend="olive", options={"colour": "red"})),
            ("3 bits", lambda o: api.quantize(fp32, o, bits=3, backend="olive")),
            ("group size 48", lambda o: api.quantize(fp32, o, bits=4, group_size=48, backend="olive")),
            ("hqq symmetric", lambda o: api.quantize(fp32, o, bits=4, method="hqq", symmetric=True, backend="olive")),
            ("gptq", lambda o: api.quantize(fp32, o, bits=4, method="gptq", backend="olive")),
            ("unknown scheme", lambda o: api.quantize(fp32, o, scheme="int3", backend="olive")),
            ("bad accuracy level", lambda o: api.quantize(fp32, o, bits=4, backend="olive",
                                                          options={"accuracy_level": "9"})),
            ("static activations", lambda o: api.quantize(fp32, o, bits=8, activation_bits=8, backend="olive")),
            ("not a GenAI bundle", lambda o: api.quantize(no_genai, o, bits=4, backend="olive")),
            ("already int4", lambda o: api.quantize(int4, o, bits=4, backend="olive")),
            ("bad provider", lambda o: api.quantize(fp32, o, bits=4, backend="olive",
                                                    options={"provider": "tpu"})),
            ("compile: unknown level", lambda o: api.compile(fp32, "cpu", o, backend="olive",
                                                             options={"level": "max"})),
            ("run: unknown option", lambda o: api.load(fp32, backend="olive", options={"beam": "4"})),
        ]

    @pytest.fixture(autouse=True)
    def _paths(self, bundles):
        type(self)._fp32 = bundles("llama", "onnx")
        type(self)._int4 = bundles("llama", "int4")
