"""``--calibration``: one way to read calibration data for every backend.

Text. A file is read as UTF-8 text. A directory stands for every ``.txt`` and
``.md`` file below it (hidden ones left out), in sorted path order, joined
with a blank line. Methods that tokenize running text (llama.cpp's importance
matrix, MLX and Olive GPTQ/AWQ) use :func:`read_text` whole; methods that
take one sample per line (NNCF's data-aware compression, OpenVINO INT8 PTQ
and QNN QDQ from text) use :func:`text_lines`, the non-empty lines stripped.

Arrays. A directory with one ``NAME.npy`` per graph input
(:func:`edgesmith.util.input_files`), each either one sample of the input's
shape or N samples stacked on a new leading axis, every input the same N.
Arrays are cast to the input's dtype within one family (float to float,
integer to integer); the inputs are :data:`~edgesmith.graphinputs.InputSpec`
records. Operations that take both read a directory as arrays and a file as
text.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import UserError
from .graphinputs import InputSpec, fits_shape, same_family, shape_text
from .util import input_files

if TYPE_CHECKING:
    import numpy as np

TEXT_SUFFIXES = (".txt", ".md")


def text_files(path: Path) -> list[Path]:
    """The files whose text makes up the calibration text at ``path``."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"calibration {path} does not exist; give a text file or a directory of "
                        f".txt/.md files")
    if not path.is_dir():
        return [path]
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES
                   and not any(part.startswith(".") for part in p.relative_to(path).parts))
    if not files:
        raise UserError(f"calibration directory {path} holds no .txt or .md files; give a plain-text "
                        f"file or a directory of them")
    return files


def read_text(path: Path) -> str:
    """The calibration text at ``path`` (see the module docstring); never empty."""
    parts = []
    for f in text_files(path):
        try:
            parts.append(f.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            raise UserError(f"calibration file {f} is not UTF-8 text; give a plain-text file") from None
        except OSError as exc:
            raise UserError(f"cannot read calibration file {f} ({exc.strerror or exc}); give a "
                            f"readable plain-text file") from None
    text = "\n\n".join(parts)
    if not text.strip():
        raise UserError(f"calibration {path} holds no text; give a plain-text file with "
                        f"representative text")
    return text


def text_lines(path: Path) -> list[str]:
    """One sample per non-empty line of the calibration text, stripped; never empty."""
    return [ln.strip() for ln in read_text(path).splitlines() if ln.strip()]


def array_stacks(directory: Path, specs: Mapping[str, InputSpec], *,
                 mmap: bool = False) -> tuple[dict[str, np.ndarray], int]:
    """``({name: N x input array}, N)`` from a directory of ``NAME.npy`` files,
    checked against ``specs`` (not cast; ``mmap`` maps the files instead of reading them)."""
    import numpy as np

    directory = Path(directory)
    if not directory.is_dir():
        raise UserError(f"calibration {directory} is not a directory; calibrating on arrays reads a "
                        f"directory with one NAME.npy per graph input "
                        f"({', '.join(n + '.npy' for n in specs)})")
    files = input_files(directory, specs)
    stacks: dict[str, np.ndarray] = {}
    count = None
    for name, (dims, dtype) in specs.items():
        f = files[name]
        try:
            arr = np.load(f, mmap_mode="r" if mmap else None, allow_pickle=False)
        except Exception as exc:
            raise UserError(f"cannot read {f} as a numpy array ({exc}); save it with numpy.save") from None
        if fits_shape(dims, arr.shape):
            arr = arr[None]
        elif dims is None or not fits_shape(dims, arr.shape[1:]):
            want = shape_text(dims)
            raise UserError(f"{f.name} has shape {list(arr.shape)} but input {name!r} takes {want} "
                            f"(or N x {want} for N samples); re-save it with that shape")
        if dtype is not None and not same_family(arr.dtype, dtype):
            want = np.dtype(dtype).name
            raise UserError(f"{f.name} holds {arr.dtype} but input {name!r} is {want}; re-save it as {want}")
        if count is not None and arr.shape[0] != count:
            raise UserError(f"calibration files hold different sample counts ({count} vs {arr.shape[0]} "
                            f"in {f.name}); give every input the same N")
        count = arr.shape[0]
        stacks[name] = arr
    if not count:
        raise UserError(f"calibration directory {directory} holds no samples; stack at least one per input")
    return stacks, count


def array_samples(directory: Path, specs: Mapping[str, InputSpec],
                  limit: int | None = None) -> list[dict[str, np.ndarray]]:
    """The samples of a directory of ``NAME.npy`` files, each ``{name: array}``
    in the input's dtype; at most ``limit`` of them."""
    stacks, count = array_stacks(directory, specs)
    stacks = {name: arr.astype(specs[name][1], copy=False) if specs[name][1] is not None else arr
              for name, arr in stacks.items()}
    n = min(count, limit) if limit else count
    return [{name: arr[i] for name, arr in stacks.items()} for i in range(n)]
