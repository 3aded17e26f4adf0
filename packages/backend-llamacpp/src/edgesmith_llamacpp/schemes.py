"""llama.cpp quantization schemes as `llama_model_quantize` knows them.

Pure data, no vendor import: the plugin declares these names cheaply, and a
test checks each number against the `LLAMA_FTYPE_*` constants that the
installed llama_cpp exposes, so a drift in upstream numbering fails loudly.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from edgesmith.errors import UserError


@attrs.frozen
class Scheme:
    name: str
    #: Value of llama.cpp's `enum llama_ftype` (LLAMA_FTYPE_MOSTLY_<name>).
    ftype: int
    #: Nominal bits per weight of the main tensors (llama.cpp's own figures).
    bpw: float
    #: llama_model_quantize refuses (or degrades badly) without an importance matrix.
    needs_imatrix: bool = False


_TABLE = (
    Scheme("F16", 1, 16.0),
    Scheme("BF16", 32, 16.0),
    Scheme("Q8_0", 7, 8.5),
    Scheme("Q6_K", 18, 6.56),
    Scheme("Q5_K_M", 17, 5.69),
    Scheme("Q5_K_S", 16, 5.54),
    Scheme("Q5_1", 9, 6.0),
    Scheme("Q5_0", 8, 5.5),
    Scheme("Q4_K_M", 15, 4.89),
    Scheme("Q4_K_S", 14, 4.58),
    Scheme("Q4_1", 3, 5.0),
    Scheme("Q4_0", 2, 4.5),
    Scheme("IQ4_NL", 25, 4.5),
    Scheme("IQ4_XS", 30, 4.25),
    Scheme("Q3_K_L", 13, 4.27),
    Scheme("Q3_K_M", 12, 3.91),
    Scheme("Q3_K_S", 11, 3.5),
    Scheme("IQ3_M", 27, 3.66),
    Scheme("IQ3_S", 26, 3.44),
    Scheme("IQ3_XS", 22, 3.3, needs_imatrix=True),
    Scheme("IQ3_XXS", 23, 3.06, needs_imatrix=True),
    Scheme("Q2_K", 10, 3.35),
    Scheme("Q2_K_S", 21, 3.18, needs_imatrix=True),
    Scheme("IQ2_M", 29, 2.7, needs_imatrix=True),
    Scheme("IQ2_S", 28, 2.5, needs_imatrix=True),
    Scheme("IQ2_XS", 20, 2.31, needs_imatrix=True),
    Scheme("IQ2_XXS", 19, 2.06, needs_imatrix=True),
    Scheme("IQ1_M", 31, 1.75, needs_imatrix=True),
    Scheme("IQ1_S", 24, 1.56, needs_imatrix=True),
    Scheme("TQ2_0", 37, 2.06),
    Scheme("TQ1_0", 36, 1.69),
)

SCHEMES: Mapping[str, Scheme] = {s.name: s for s in _TABLE}
#: llama-quantize's short aliases.
ALIASES = {"Q3_K": "Q3_K_M", "Q4_K": "Q4_K_M", "Q5_K": "Q5_K_M"}

#: `--bits N` without `--scheme`: the usual llama.cpp pick for that width.
BITS_DEFAULT = {16: "F16", 8: "Q8_0", 6: "Q6_K", 5: "Q5_K_M", 4: "Q4_K_M", 3: "Q3_K_M", 2: "Q2_K"}

#: Types the converter can write directly (`--dtype`), mapped to converter --outtype.
CONVERT_DTYPES = ("f32", "f16", "bf16", "q8_0")

#: GGML tensor types that are plain floats; anything else in a 2-D weight means "already quantized".
FLOAT_TENSOR_TYPES = frozenset({"F32", "F16", "BF16"})


def lookup(name: str) -> Scheme:
    key = name.strip().upper()
    key = ALIASES.get(key, key)
    if key not in SCHEMES:
        raise UserError(
            f"unknown llama.cpp scheme {name!r}; choose one of {', '.join(SCHEMES)}"
        )
    return SCHEMES[key]


def for_bits(bits: int) -> Scheme:
    if bits not in BITS_DEFAULT:
        widths = ", ".join(str(b) for b in sorted(BITS_DEFAULT, reverse=True))
        raise UserError(
            f"llama.cpp has no default scheme for --bits {bits}; use one of {widths} "
            f"or name a scheme with --scheme (e.g. IQ1_M)"
        )
    return SCHEMES[BITS_DEFAULT[bits]]
