"""NNCF weight compression modes, data-aware methods, full INT8 PTQ of an ONNX encoder."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest

from edgesmith import api
from edgesmith.errors import UnsupportedError, UserError
from edgesmith.types import QuantSpec
from edgesmith_openvino.schemes import plan


@pytest.mark.parametrize(
    ("spec", "scheme", "group"),
    [
        (QuantSpec(bits=8), "int8_asym", None),
        (QuantSpec(bits=8, symmetric=True), "int8_sym", None),
        (QuantSpec(bits=4), "int4_asym", None),
        (QuantSpec(bits=4, symmetric=True, group_size=32), "int4_sym", 32),
        (QuantSpec(scheme="INT4_ASYM", group_size=64, ratio=0.8), "int4_asym", 64),
        (QuantSpec(activation_bits=8), "int8_ptq", None),
    ],
)
def test_quantspec_maps_onto_nncf(spec: QuantSpec, scheme: str, group: int | None) -> None:
    p = plan(spec)
    assert p.scheme == scheme and p.group_size == group


@pytest.mark.parametrize(
    "spec",
    [QuantSpec(bits=3), QuantSpec(bits=8, group_size=64), QuantSpec(bits=8, method="awq"),
     QuantSpec(bits=4, method="hqq"), QuantSpec(scheme="int8_ptq", group_size=32)],
)
def test_unsupported_specs_are_refused(spec: QuantSpec) -> None:
    with pytest.raises(UnsupportedError):
        plan(spec)


def _constant_types(path: Path) -> dict[str, int]:
    return api.inspect(path)["constant_types"]


@pytest.mark.parametrize(
    ("kwargs", "options", "expect"),
    [
        ({"bits": 8, "symmetric": True}, {}, "i8"),
        ({"scheme": "int8_asym"}, {}, "u8"),
        ({"scheme": "int4_sym", "group_size": 32}, {"all_layers": "true"}, "i4"),
        ({"bits": 4, "group_size": 64, "ratio": 0.5}, {}, "u4"),
    ],
)
def test_weight_compression_modes(ov_fp16, tmp_path: Path, kwargs, options, expect) -> None:
    out = tmp_path / "q"
    art = api.quantize(ov_fp16("llama"), out, backend="openvino", options=options, **kwargs)
    types = _constant_types(out)
    assert expect in types, types
    assert art.details["weights_ratio"] < (0.6 if expect in ("u8", "i8") else 0.45)
    if "ratio" in kwargs:
        assert "u8" in types, "ratio < 1 keeps some layers in the INT8 backup precision"


def test_data_aware_compression_from_calibration_text(ov_fp16, tmp_path: Path) -> None:
    text = resources.files("edgesmith").joinpath("data/tiny_corpus.txt").read_text()
    cal = tmp_path / "calibration.txt"
    cal.write_text("\n".join(text.splitlines()[:6]))
    art = api.quantize(ov_fp16("llama"), tmp_path / "q", bits=4, group_size=64,
                       method="scale-estimation", calibration=cal, backend="openvino",
                       options={"subset_size": "4"})
    assert art.details["method"] == "scale_estimation" and art.details["calibration_samples"] >= 1
    assert "u4" in _constant_types(tmp_path / "q")


def test_ptq_refuses_llm_and_bad_calibration(ov_fp16, tiny_encoder, tmp_path: Path) -> None:
    with pytest.raises(UnsupportedError, match="encoder"):
        api.quantize(ov_fp16("llama"), tmp_path / "q", scheme="int8_ptq", calibration=tmp_path,
                     backend="openvino")
    onnx_path = tiny_encoder(tmp_path / "enc" / "model.onnx")
    api.convert(onnx_path.parent, "openvino", tmp_path / "ir", backend="openvino")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="no file for input"):
        api.quantize(tmp_path / "ir", tmp_path / "q", scheme="int8_ptq", calibration=empty,
                     backend="openvino")
    assert not (tmp_path / "q").exists()
