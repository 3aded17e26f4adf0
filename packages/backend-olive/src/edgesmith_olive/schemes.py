"""Native scheme names and how each maps to an Olive pass.

Kept free of heavy imports so the plugin can list the schemes cheaply.
"""

from __future__ import annotations

from edgesmith.errors import UserError

#: scheme -> (bits, method, summary). ``int4`` is RTN, the fast default.
SCHEMES = {
    "int4": (4, "rtn", "int4 weight-only, round-to-nearest (MatMulNBits)"),
    "int4_rtn": (4, "rtn", "int4 weight-only, round-to-nearest (MatMulNBits)"),
    "int4_hqq": (4, "hqq", "int4 weight-only, half-quadratic (HQQ, asymmetric)"),
    "int4_gptq": (4, "gptq", "int4 weight-only, GPTQ from --calibration text (from the Hugging Face checkpoint)"),
    "int8": (8, "rtn", "int8 weight-only, round-to-nearest (MatMulNBits)"),
    "int8_dynamic": (8, "dynamic", "int8 weights, activations quantized at run time (MatMulInteger)"),
    "fp16": (16, "fp16", "float16 weights, float32 inputs/outputs"),
}

#: Schemes of the GPTQ path (from a Hugging Face checkpoint); the others are
#: those of a GenAI bundle (weight-only, dynamic int8, fp16).
GPTQ_SCHEMES = tuple(k for k, (_, method, _) in SCHEMES.items() if method == "gptq")
BUNDLE_SCHEMES = tuple(k for k in SCHEMES if k not in GPTQ_SCHEMES)

BLOCK_SIZES = (16, 32, 64, 128, 256)


def check_block_size(block: int, given_as: str) -> int:
    """MatMulNBits blocks are powers of two from 16 to 256; ``given_as`` names
    the setting in the error (``--group-size 48``)."""
    if block not in BLOCK_SIZES:
        raise UserError(f"{given_as} is not valid; give one of {', '.join(map(str, BLOCK_SIZES))}")
    return block
