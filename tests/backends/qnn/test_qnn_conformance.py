"""The core conformance kit on the QNN backend (quantize onnx -> qnn)."""

from __future__ import annotations

from pathlib import Path

import pytest
from qnn_testkit import SHAPE

from edgesmith import api
from edgesmith.testing.conformance import BackendConformance


class TestQnnConformance(BackendConformance):
    backend = "qnn"
    operation = "quantize"
    op_kwargs = {"scheme": "a8w8", "options": {**SHAPE, "placement": "0"}}
    scores = True
    run_tokens = 6

    @pytest.fixture(scope="class")
    @classmethod
    def source(cls, encoder) -> Path:
        return encoder

    @pytest.fixture(scope="class")
    @classmethod
    def runnable(cls, llm_pipeline) -> Path:
        # Generation, scoring and chat: a language-model pipeline compiled for the NPU.
        return llm_pipeline("llama3.2")["ctx"]

    def bad_inputs(self, tmp_path: Path):
        encoder = self._encoder
        cal = tmp_path / "cal-mismatch"
        cal.mkdir()
        (cal / "wrong_name.npy").write_bytes(b"")
        return [
            ("dynamic shapes", lambda o: api.quantize(encoder, o, scheme="a8w8", backend="qnn")),
            ("calibration mismatch", lambda o: api.quantize(
                encoder, o, scheme="a8w8", calibration=cal, backend="qnn", options=SHAPE)),
            ("op the HTP cannot run", lambda o: api.compile(
                self._unsupported, output=o, device="npu", backend="qnn",
                options={"soc_model": "60"})),
            ("unknown scheme", lambda o: api.quantize(encoder, o, scheme="q4_k_m", backend="qnn",
                                                      options=SHAPE)),
        ]

    @pytest.fixture(autouse=True)
    def _models(self, encoder, unsupported):
        # bad_inputs() takes no fixtures; hand it the session models.
        type(self)._encoder = encoder
        type(self)._unsupported = unsupported
