"""Mapping edgesmith's QuantSpec onto ONNX Runtime's QNN QDQ configuration."""

from __future__ import annotations

import attrs

from edgesmith.errors import UnsupportedError, UserError
from edgesmith.types import QuantSpec

#: Native scheme names: activation bits / weight bits. ``s`` = signed symmetric weights.
SCHEMES = {
    "a16w8": (16, 8, False),
    "a8w8": (8, 8, False),
    "a16w8s": (16, 8, True),
    "a8w8s": (8, 8, True),
    # int4 weights: MatMul/Conv/Gemm weights in signed 4 bits per output
    # channel; other initializers (biases, norms, embeddings) stay 8-bit.
    "a16w4": (16, 4, True),
    "a8w4": (8, 4, True),
}
CALIBRATE_METHODS = ("minmax", "entropy", "percentile", "distribution")


@attrs.frozen
class QuantPlan:
    scheme: str
    activation_bits: int
    weight_bits: int
    weight_symmetric: bool
    calibrate_method: str

    def quant_types(self) -> tuple[object, object]:
        from onnxruntime.quantization import QuantType

        act = QuantType.QUInt16 if self.activation_bits == 16 else QuantType.QUInt8
        # With 4-bit schemes only the big matrices are int4 (via overrides);
        # the remaining weights (norm scales, biases) stay uint8, which the
        # HTP LayerNorm needs.
        weight = QuantType.QInt8 if self.weight_symmetric and self.weight_bits == 8 else QuantType.QUInt8
        return act, weight

    def calibration_method(self) -> object:
        from onnxruntime.quantization import CalibrationMethod

        return {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                "percentile": CalibrationMethod.Percentile,
                "distribution": CalibrationMethod.Distribution}[self.calibrate_method]


def plan(spec: QuantSpec, method_option: str | None = None) -> QuantPlan:
    """A QuantPlan for ``spec``; ``scheme`` wins over the common fields."""
    if spec.group_size is not None:
        raise UnsupportedError("the QNN QDQ path quantizes per tensor or per channel, not in groups; "
                               "drop --group-size")
    if spec.ratio is not None:
        raise UnsupportedError("the QNN QDQ path has no mixed-precision ratio; drop --ratio")
    if spec.scheme:
        key = spec.scheme.lower()
        if key not in SCHEMES:
            raise UserError(f"unknown qnn scheme {spec.scheme!r}; use one of {', '.join(SCHEMES)}")
        act, wbits, sym = SCHEMES[key]
    else:
        wbits = spec.bits if spec.bits is not None else 8
        if wbits not in (4, 8):
            raise UnsupportedError(f"QNN HTP QDQ weights are 8 or 4 bits, not {wbits}; "
                                   f"use --bits 8 or --bits 4 (with --activation-bits 8 or 16)")
        if wbits == 4 and spec.symmetric is False:
            raise UnsupportedError("4-bit weights on the HTP are symmetric; drop --asym")
        act = spec.activation_bits if spec.activation_bits is not None else 16
        if act not in (8, 16):
            raise UnsupportedError(f"activations quantize to 8 or 16 bits on the HTP, not {act}; "
                                   f"use --activation-bits 8 or 16")
        sym = bool(spec.symmetric) or wbits == 4
        key = f"a{act}w{wbits}" + ("s" if sym and wbits == 8 else "")
    method = (method_option or spec.method or "minmax").lower()
    if method not in CALIBRATE_METHODS:
        raise UnsupportedError(f"calibration method {method!r} is not offered for QNN QDQ; "
                               f"use one of {', '.join(CALIBRATE_METHODS)}")
    return QuantPlan(key, act, wbits, sym, method)
