"""Named arrays checked against a graph's inputs, one way for every backend.

A graph input is described by a spec ``(dims, dtype)``: ``dims`` is a tuple
with an int for each fixed dimension and None for a dynamic one (or None when
even the rank is unknown), ``dtype`` a numpy dtype (or None: any). Arrays are
cast to the input's dtype within one family (float to float, integer to
integer, bool to bool); anything else is a one-line UserError saying what the
model takes, as are missing, unknown and misshapen inputs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .errors import UserError

if TYPE_CHECKING:
    import numpy as np

#: ``(dims, dtype)`` of one graph input (see the module docstring).
InputSpec = tuple[tuple[int | None, ...] | None, Any]


def dims_of(shape: Iterable[Any] | None) -> tuple[int | None, ...] | None:
    """Spec dims from a vendor's shape: ints stay, symbolic or unknown dimensions become None."""
    if shape is None:
        return None
    return tuple(d if isinstance(d, int) and not isinstance(d, bool) and d >= 0 else None for d in shape)


def shape_text(dims: tuple[int | None, ...] | None) -> str:
    """``[1, ?, 64]`` (``?``: any length), or ``any shape``."""
    if dims is None:
        return "any shape"
    return "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"


def describe_inputs(specs: Mapping[str, InputSpec]) -> str:
    """``features [1, ?, 64] float32, mask [1, ?] int64``."""
    import numpy as np

    return ", ".join(f"{name} {shape_text(dims)}" + (f" {np.dtype(dtype).name}" if dtype is not None else "")
                     for name, (dims, dtype) in specs.items())


def fits_shape(dims: tuple[int | None, ...] | None, shape: tuple[int, ...]) -> bool:
    """Whether an array of ``shape`` is one value of an input with ``dims``."""
    if dims is None:
        return True
    return len(dims) == len(shape) and all(d is None or d == s for d, s in zip(dims, shape, strict=True))


def same_family(have: Any, want: Any) -> bool:
    """Float and float, integer and integer (signed or not), bool and bool."""
    import numpy as np

    have, want = np.dtype(have), np.dtype(want)
    families = ("f", "iu", "b", "c")
    return any(have.kind in f and want.kind in f for f in families) or have == want


def dtype_error(what: str, have: Any, want: Any) -> UserError:
    import numpy as np

    want = np.dtype(want).name
    return UserError(f"{what} is {np.dtype(have).name} but the model takes {want}; save the array as "
                     f"{want} (np.save(FILE, a.astype(np.{want})))")


def fit_dtype(name: str, array: np.ndarray, want: Any) -> np.ndarray:
    """``array`` in the input's dtype ``want`` (cast within one family; None keeps it)."""
    if want is None or array.dtype == want:
        return array
    if not same_family(array.dtype, want):
        raise dtype_error(f"input {name}", array.dtype, want)
    return array.astype(want)


def check_inputs(inputs: Mapping[str, Any], specs: Mapping[str, InputSpec]) -> dict[str, np.ndarray]:
    """The feed for a graph with inputs ``specs``: every input given, none unknown,
    each of a fitting shape and cast to the input's dtype (in the specs' order)."""
    import numpy as np

    unknown = sorted(set(inputs) - set(specs))
    missing = [n for n in specs if n not in inputs]
    if unknown or missing:
        what = "; ".join(part for part in (
            f"unknown input {', '.join(unknown)}" if unknown else "",
            f"missing input {', '.join(missing)}" if missing else "") if part)
        raise UserError(f"{what}; the model takes {describe_inputs(specs)} "
                        f"(give each as --input NAME=FILE.npy)")
    feed = {}
    for name, (dims, dtype) in specs.items():
        array = np.asarray(inputs[name])
        if not fits_shape(dims, array.shape):
            raise UserError(f"input {name} has shape {list(array.shape)} but the model takes "
                            f"{shape_text(dims)}; pad or reshape it to that shape")
        feed[name] = fit_dtype(name, array, dtype)
    return feed
