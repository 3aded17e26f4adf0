"""The shared backend checks, run on the real OpenVINO stack."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from edgesmith import api
from edgesmith.testing.conformance import BackendConformance


class TestOpenVINOConformance(BackendConformance):
    backend = "openvino"
    operation = "quantize"
    op_kwargs = {"scheme": "int4_asym", "group_size": 64}

    @pytest.fixture(scope="class")
    @classmethod
    def source(cls, ov_fp16) -> Path:
        return ov_fp16("llama")

    @pytest.fixture(scope="class")
    @classmethod
    def runnable(cls, ov_int4) -> Path:
        return ov_int4("llama")

    def bad_inputs(self, tmp_path: Path):
        src = self._source_path
        corrupt = tmp_path / "corrupt-ir"
        shutil.copytree(src, corrupt, ignore=shutil.ignore_patterns("edgesmith.json"))
        data = (corrupt / "openvino_model.bin").read_bytes()
        (corrupt / "openvino_model.bin").write_bytes(data[: len(data) // 3])
        return [
            ("group size not dividing the hidden size",
             lambda o: api.quantize(src, o, scheme="int4_asym", group_size=48, backend="openvino")),
            ("corrupt IR", lambda o: api.quantize(corrupt, o, bits=8, backend="openvino")),
            ("missing device", lambda o: api.compile(src, "npu", o, backend="openvino")),
            ("unknown option", lambda o: api.quantize(src, o, bits=4, backend="openvino",
                                                      options={"nonsense": "1"})),
            ("unknown scheme", lambda o: api.quantize(src, o, scheme="int5_odd", backend="openvino")),
            ("data-aware without calibration",
             lambda o: api.quantize(src, o, bits=4, method="awq", backend="openvino")),
        ]

    @pytest.fixture(autouse=True)
    def _remember_source(self, source: Path) -> None:
        self._source_path = source
