"""The quantization vocabulary MLX understands, and the mapping from QuantSpec.

Pure Python (no MLX import) so the capability declaration and request
validation stay cheap and happen before any model is loaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from edgesmith.errors import UnsupportedError, UserError
from edgesmith.types import QuantSpec

#: mode -> (allowed bits, allowed group sizes, default bits, default group size).
#: Figures checked against mx.quantize 0.32: affine also takes 1 bit, which
#: mlx-lm does not offer, so neither do we.
MODES: dict[str, tuple[tuple[int, ...], tuple[int, ...], int, int]] = {
    "affine": ((2, 3, 4, 5, 6, 8), (32, 64, 128), 4, 64),
    "mxfp4": ((4,), (32,), 4, 32),
    "nvfp4": ((4,), (16,), 4, 16),
    "mxfp8": ((8,), (32,), 8, 32),
}

#: mlx-lm's mixed-precision recipes: name -> (low bits, high bits). Sensitive
#: layers (v_proj, down_proj in some layers, lm_head) get the high bits.
RECIPES: dict[str, tuple[int, int]] = {
    "mixed_2_6": (2, 6),
    "mixed_3_4": (3, 4),
    "mixed_3_6": (3, 6),
    "mixed_4_6": (4, 6),
}

#: Data-aware methods (mlx_lm.quant.gptq / mlx_lm.quant.awq); both run on the CPU.
#: mlx-lm's DWQ distils for hours on a GPU and is not offered.
DATA_AWARE = ("gptq", "awq")
METHODS = ("rtn", *DATA_AWARE)

#: Names accepted as ``--scheme`` (QuantSpec.scheme).
SCHEMES: tuple[str, ...] = (*MODES, *RECIPES)

#: Canonical dtype name (:func:`edgesmith.options.canonical_dtype`) -> MLX's name.
MX_DTYPES: dict[str, str] = {"f16": "float16", "bf16": "bfloat16", "f32": "float32"}
#: MLX's float dtype names, as config.json records them.
DTYPES = tuple(MX_DTYPES.values())


@attrs.frozen
class QuantPlan:
    """A validated quantization request in MLX terms."""

    mode: str
    bits: int
    group_size: int
    calibration_samples: int
    calibration_length: int
    recipe: str | None = None
    method: str = "rtn"
    dtype: str | None = None
    skip_indivisible: bool = False

    def describe(self) -> str:
        what = self.recipe or f"{self.mode} {self.bits}-bit"
        return f"{what} group {self.group_size}" + (f" ({self.method})" if self.method != "rtn" else "")

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


def plan(spec: QuantSpec, options: Mapping[str, Any]) -> QuantPlan:
    """Map ``spec`` and the parsed ``options`` (:data:`edgesmith_mlx.options.QUANTIZE`,
    defaults filled) onto MLX, refusing what MLX cannot honour."""
    native = spec.scheme.strip().lower() if spec.scheme else None
    mode = options.get("mode")
    recipe = options.get("recipe")
    if native is not None:
        if native in MODES:
            if mode and mode != native:
                raise UserError(f"--scheme {native} and option mode={mode} disagree; give only one")
            mode = native
        elif native in RECIPES:
            if recipe and recipe != native:
                raise UserError(f"--scheme {native} and option recipe={recipe} disagree; give only one")
            recipe = native
        else:
            raise UnsupportedError(
                f"MLX has no scheme {spec.scheme!r}; choose one of {', '.join(SCHEMES)}"
            )
    mode = mode or "affine"
    if recipe and mode != "affine":
        raise UnsupportedError(f"mlx-lm's mixed recipes use affine quantization only, not {mode}; drop mode={mode}")

    bits_ok, groups_ok, default_bits, default_group = MODES[mode]
    if recipe:
        low, high = RECIPES[recipe]
        if spec.bits is not None and spec.bits != low:
            raise UserError(f"recipe {recipe} quantizes at {low} bits (sensitive layers {high}); "
                            f"drop --bits or use --bits {low}")
        bits = low
    else:
        bits = spec.bits if spec.bits is not None else default_bits
        if bits not in bits_ok:
            raise UnsupportedError(
                f"MLX {mode} quantization takes {', '.join(map(str, bits_ok))} bits, not {bits}; "
                f"choose one of those" + ("" if mode == "affine" else " or mode affine")
            )
    group = spec.group_size if spec.group_size is not None else default_group
    if group == -1:
        raise UnsupportedError("MLX quantizes in groups, not per channel; use --group-size 32, 64 or 128")
    if group not in groups_ok:
        raise UnsupportedError(
            f"MLX {mode} quantization takes group size {', '.join(map(str, groups_ok))}, not {group}; "
            f"choose one of those"
        )
    if spec.symmetric is True and mode == "affine":
        raise UnsupportedError("MLX affine quantization is asymmetric (a scale and a bias per group); "
                               "drop --symmetric or use --scheme mxfp4/mxfp8")
    if spec.symmetric is False and mode != "affine":
        raise UnsupportedError(f"MLX {mode} is a symmetric floating-point format; drop the asymmetric "
                               f"request or use mode affine")
    if spec.activation_bits is not None:
        raise UnsupportedError("MLX quantizes weights only; drop --activation-bits")
    if spec.ratio is not None:
        raise UnsupportedError("MLX has no ratio-based mixed precision; use --scheme "
                               + "/".join(RECIPES) + " for mixed bits")
    method = (spec.method or "rtn").strip().lower()
    if method == "dwq":
        raise UnsupportedError("method dwq (mlx-lm's distillation) is not offered: it trains for hours "
                               "on a GPU; use --method gptq or awq")
    if method not in METHODS:
        raise UnsupportedError(f"MLX has no quantization method {spec.method!r}; choose one of {', '.join(METHODS)}")
    if method in DATA_AWARE:
        if spec.calibration is None:
            raise UserError(f"method {method} learns from data; give --calibration FILE (plain text)")
        if mode != "affine" or recipe:
            raise UnsupportedError(f"method {method} runs with plain affine quantization here; drop the mode/recipe")
    elif spec.calibration is not None:
        raise UserError("--calibration is only used by data-aware methods; add --method gptq or awq, "
                        "or drop --calibration")
    return QuantPlan(
        mode=mode,
        bits=bits,
        group_size=group,
        calibration_samples=options["calibration_samples"],
        calibration_length=options["calibration_length"],
        recipe=recipe,
        method=method,
        dtype=MX_DTYPES.get(options.get("dtype")),
        skip_indivisible=options["indivisible"] == "skip",
    )
