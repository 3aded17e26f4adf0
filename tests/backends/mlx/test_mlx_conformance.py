"""The shared backend conformance kit, run against the real MLX stack."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgesmith import api
from edgesmith.testing.conformance import BackendConformance


class TestMlxConformance(BackendConformance):
    backend = "mlx"
    operation = "quantize"
    op_kwargs = {"bits": 4, "group_size": 64}

    @pytest.fixture(scope="class")
    @classmethod
    def source(cls, mlx_f16) -> Path:
        return mlx_f16("llama")

    @pytest.fixture(scope="class")
    @classmethod
    def runnable(cls, mlx_q4) -> Path:
        return mlx_q4("llama")

    @pytest.fixture(autouse=True)
    def _models(self, mlx_f16, mlx_q4, tiny_model) -> None:
        self._f16, self._q4, self._tiny = mlx_f16, mlx_q4, tiny_model

    def bad_inputs(self, tmp_path):
        f16, q4 = self._f16("llama"), self._q4("llama")
        odd = self._tiny("llama", intermediate_size=320)  # down_proj input 320: not a multiple of 128
        calib = tmp_path / "calib.txt"
        calib.write_text("some text\n")
        empty = tmp_path / "empty"
        empty.mkdir()
        (empty / "config.json").write_text('{"model_type": "llama"}')
        unknown = tmp_path / "unknown-arch"
        unknown.mkdir()
        (unknown / "config.json").write_text('{"model_type": "no-such-arch"}')
        (unknown / "model.safetensors").write_bytes((odd / "model.safetensors").read_bytes())

        def q(src, **kw):
            return lambda out: api.quantize(src, out, backend="mlx", **kw)

        return [
            ("group size does not divide a layer", q(odd, bits=4, group_size=128)),
            ("already quantized", q(q4, bits=4)),
            ("7 bits", q(f16, bits=7)),
            ("group size 48", q(f16, bits=4, group_size=48)),
            ("per-channel", q(f16, bits=4, group_size=-1)),
            ("symmetric affine", q(f16, bits=4, symmetric=True)),
            ("mxfp4 at 8 bits", q(f16, bits=8, scheme="mxfp4")),
            ("activation bits", q(f16, bits=8, activation_bits=8)),
            ("ratio", q(f16, bits=4, ratio=0.5)),
            ("unknown scheme", q(f16, scheme="Q4_K_M")),
            ("unknown option", q(f16, bits=4, options={"colour": "blue"})),
            ("calibration without a method", q(f16, bits=4, calibration=calib)),
            ("data-aware method without calibration", q(f16, bits=4, method="gptq")),
            ("no weights", q(empty, bits=4)),
            ("unsupported architecture", q(unknown, bits=4)),
            ("convert: bad dtype", lambda out: api.convert(self._tiny("llama"), "mlx", out,
                                                          backend="mlx", dtype="int3")),
            ("convert: unknown option", lambda out: api.convert(self._tiny("llama"), "mlx", out,
                                                               backend="mlx", options={"x": "1"})),
        ]
