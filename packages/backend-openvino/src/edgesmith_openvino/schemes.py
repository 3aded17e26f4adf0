"""The quantization schemes this backend offers, and the mapping from QuantSpec.

Scheme names are NNCF's own: the values of ``nncf.CompressWeightsMode`` for
weight compression, plus ``int8_ptq`` for full post-training quantization of
weights and activations (``nncf.quantize``). Nothing here imports NNCF.
"""

from __future__ import annotations

import attrs

from edgesmith.errors import UnsupportedError, UserError
from edgesmith.types import QuantSpec

#: scheme -> (bits, what it is)
WEIGHT_SCHEMES: dict[str, tuple[int, str]] = {
    "int8_asym": (8, "8-bit integer weights with a zero point, per output channel"),
    "int8_sym": (8, "8-bit integer weights without zero point, per output channel"),
    "int4_asym": (4, "4-bit integer weights with a zero point, in groups; embeddings/head in a backup precision"),
    "int4_sym": (4, "4-bit integer weights without zero point, in groups"),
    "nf4": (4, "4-bit NormalFloat weights, in groups"),
    "mxfp4": (4, "4-bit OCP microscaling float (E2M1) weights, groups of 32"),
    "mxfp8_e4m3": (8, "8-bit OCP microscaling float (E4M3) weights, groups of 32"),
    "fp8_e4m3": (8, "8-bit float (E4M3) weights"),
}
PTQ_SCHEME = "int8_ptq"
SCHEMES: tuple[str, ...] = (*WEIGHT_SCHEMES, PTQ_SCHEME)

#: QuantSpec.method -> the compress_weights flag it turns on (None: plain round-to-nearest).
METHODS: dict[str, str | None] = {
    "rtn": None,
    "awq": "awq",
    "scale-estimation": "scale_estimation",
    "scale_estimation": "scale_estimation",
    "gptq": "gptq",
}
DATA_AWARE = {"awq", "scale_estimation", "gptq"}


@attrs.frozen
class QuantPlan:
    """What NNCF will be asked to do."""

    scheme: str
    group_size: int | None = None  # None: NNCF's default for the mode
    ratio: float | None = None
    method: str | None = None  # compress_weights flag name
    ptq: bool = False

    @property
    def bits(self) -> int:
        return 8 if self.ptq else WEIGHT_SCHEMES[self.scheme][0]

    @property
    def is_int4_family(self) -> bool:
        return not self.ptq and self.bits == 4


def plan(spec: QuantSpec) -> QuantPlan:
    """Map the common QuantSpec fields (or a native scheme) onto NNCF's parameters."""
    if spec.scheme:
        scheme = spec.scheme.strip().lower()
        if scheme not in SCHEMES:
            raise UserError(f"unknown openvino scheme {spec.scheme!r}; choose one of {', '.join(SCHEMES)}")
        if spec.bits is not None and scheme != PTQ_SCHEME and spec.bits != WEIGHT_SCHEMES[scheme][0]:
            raise UserError(f"--bits {spec.bits} contradicts scheme {scheme}; drop one of them")
    elif spec.activation_bits is not None:
        scheme = PTQ_SCHEME
    else:
        sym = bool(spec.symmetric)  # None -> asymmetric, the more accurate default
        if spec.bits == 8:
            scheme = "int8_sym" if sym else "int8_asym"
        elif spec.bits == 4:
            scheme = "int4_sym" if sym else "int4_asym"
        else:
            raise UnsupportedError(
                f"openvino compresses weights to 4 or 8 bits, not {spec.bits}; use --bits 4 or --bits 8"
            )
    ptq = scheme == PTQ_SCHEME
    if ptq:
        if spec.activation_bits not in (None, 8) or spec.bits not in (None, 8):
            raise UnsupportedError("openvino full quantization (int8_ptq) is 8-bit weights and activations only")
        for field in ("group_size", "ratio", "method"):
            if getattr(spec, field) is not None:
                raise UnsupportedError(f"--{field.replace('_', '-')} does not apply to int8_ptq; drop it")
        return QuantPlan(scheme, ptq=True)
    if spec.activation_bits is not None:
        raise UnsupportedError(
            f"--activation-bits needs scheme {PTQ_SCHEME}; {scheme} compresses weights only"
        )
    bits = WEIGHT_SCHEMES[scheme][0]
    method = None
    if spec.method:
        key = spec.method.strip().lower()
        if key not in METHODS:
            raise UnsupportedError(f"openvino has no method {spec.method!r}; choose one of {', '.join(METHODS)}")
        method = METHODS[key]
    if method and bits != 4:
        raise UnsupportedError(f"method {spec.method} applies to 4-bit schemes only, not {scheme}")
    group = spec.group_size
    if bits == 8 and scheme in ("int8_asym", "int8_sym", "fp8_e4m3"):
        if group not in (None, -1):
            raise UnsupportedError(f"{scheme} is per-channel; drop --group-size (groups are for 4-bit schemes)")
        group = None
        if spec.ratio not in (None, 1.0):
            raise UnsupportedError(f"--ratio mixes 4-bit with 8-bit layers; it does not apply to {scheme}")
    if scheme.startswith("mx") and group not in (None, 32):
        raise UnsupportedError(f"{scheme} uses groups of 32; drop --group-size or give 32")
    return QuantPlan(scheme, group_size=group, ratio=spec.ratio, method=method)
