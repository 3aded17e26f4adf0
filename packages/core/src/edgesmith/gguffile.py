"""A fast, read-only look at a GGUF file's layout: metadata values, their byte
ranges, and the tensor table.

`gguf.GGUFReader` builds a memmap view for every part of every value, which
takes seconds on a vocabulary of 50k-150k tokens; the GGUF -> HF export needs
the metadata once and a copy of the file without its vocabulary arrays (see
`write_without_keys`), so this module parses the layout directly with
`struct` and numpy. Little-endian GGUF v2/v3 only (what llama.cpp writes).
Used by `inspect` in the core and by the llama.cpp backend.
"""

from __future__ import annotations

import mmap
import shutil
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgesmith.errors import UserError

_MAGIC = b"GGUF"
_STRING, _ARRAY = 8, 9
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
            10: "<Q", 11: "<q", 12: "<d"}
_NUMPY = {0: "<u1", 1: "<i1", 2: "<u2", 3: "<i2", 4: "<u4", 5: "<i4", 6: "<f4", 7: "?",
          10: "<u8", 11: "<i8", 12: "<f8"}
_UINT32 = 4
#: Arrays nest at most this deep; real files use one level (arrays of tokens).
_MAX_DEPTH = 8


@dataclass
class Layout:
    version: int
    #: key -> decoded value (arrays of numbers as lists, arrays of strings as lists of str)
    values: dict[str, Any] = field(default_factory=dict)
    #: key -> (start, end) byte range of the whole key/value record
    spans: dict[str, tuple[int, int]] = field(default_factory=dict)
    #: (name, shape in GGUF order, ggml type id, offset inside the data section)
    tensors: list[tuple[str, tuple[int, ...], int, int]] = field(default_factory=list)
    tensor_table: tuple[int, int] = (0, 0)
    data_start: int = 0
    file_size: int = 0


class _Cursor:
    def __init__(self, buf: memoryview) -> None:
        self.buf, self.pos = buf, 0

    def scalar(self, fmt: str) -> Any:
        (v,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += struct.calcsize(fmt)
        return v

    def string(self) -> str:
        n = self.scalar("<Q")
        end = self.pos + n
        if end > len(self.buf):
            raise ValueError("string runs past the end of the file")
        s = bytes(self.buf[self.pos:end]).decode("utf-8", errors="surrogateescape")
        self.pos = end
        return s

    def value(self, vtype: int, depth: int = 0) -> Any:
        if depth > _MAX_DEPTH:
            raise ValueError(f"metadata arrays nested more than {_MAX_DEPTH} deep")
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            etype, count = self.scalar("<I"), self.scalar("<Q")
            if count > len(self.buf) - self.pos:  # every element takes at least one byte
                raise ValueError("array runs past the end of the file")
            if etype == _STRING:
                return [self.string() for _ in range(count)]
            if etype in _NUMPY:
                dt = np.dtype(_NUMPY[etype])
                end = self.pos + dt.itemsize * count
                if end > len(self.buf):
                    raise ValueError("array runs past the end of the file")
                arr = np.frombuffer(self.buf[self.pos:end], dtype=dt)
                self.pos = end
                return arr.tolist()
            if etype == _ARRAY:
                return [self.value(_ARRAY, depth + 1) for _ in range(count)]
            raise ValueError(f"unknown array element type {etype}")
        if vtype in _SCALARS:
            return self.scalar(_SCALARS[vtype])
        raise ValueError(f"unknown value type {vtype}")


def _tensor_nbytes(shape: tuple[int, ...], ggml_type: int) -> int:
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    block, size = GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)]
    n = 1
    for d in shape:
        n *= d
    return n // block * size


def read(path: Path) -> Layout:
    """The layout of ``path``; a truncated or foreign file is a UserError."""
    try:
        with open(path, "rb") as f:
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except OSError as e:
        raise UserError(f"cannot read {path} ({e.strerror}); check the path") from None
    except ValueError:  # an empty file cannot be mapped
        raise UserError(f"{path} is empty, not a GGUF file; re-download or re-convert it") from None
    view = memoryview(mm)
    try:
        return _parse(view)
    except (ValueError, struct.error, KeyError, UnicodeDecodeError, OverflowError, MemoryError) as e:
        raise UserError(f"{path} is not a readable GGUF file ({e}); it may be truncated or corrupt, "
                        f"re-download or re-convert it") from None
    finally:
        view.release()
        mm.close()


def _parse(buf: memoryview) -> Layout:
    if bytes(buf[:4]) != _MAGIC:
        raise ValueError("no GGUF magic")
    c = _Cursor(buf)
    c.pos = 4
    version = c.scalar("<I")
    if version not in (2, 3):
        raise ValueError(f"GGUF version {version} (byte order or version not supported)")
    n_tensors, n_kv = c.scalar("<Q"), c.scalar("<Q")
    out = Layout(version=version, file_size=len(buf))
    for _ in range(n_kv):
        start = c.pos
        key = c.string()
        out.values[key] = c.value(c.scalar("<I"))
        out.spans[key] = (start, c.pos)
    table_start = c.pos
    for _ in range(n_tensors):
        name = c.string()
        dims = tuple(c.scalar("<Q") for _ in range(c.scalar("<I")))
        out.tensors.append((name, dims, c.scalar("<I"), c.scalar("<Q")))
    out.tensor_table = (table_start, c.pos)
    align = int(out.values.get("general.alignment", 32))
    out.data_start = (c.pos + align - 1) // align * align
    for name, dims, ggml_type, offset in out.tensors:
        end = out.data_start + offset + _tensor_nbytes(dims, ggml_type)
        if end > len(buf):
            raise ValueError(f"tensor {name} runs past the end of the file")
    return out


def _encode_kv(key: str, value: int) -> bytes:
    k = key.encode()
    return struct.pack("<Q", len(k)) + k + struct.pack("<I", _UINT32) + struct.pack("<I", value)


def write_without_keys(src: Path, layout: Layout, drop: set[str], dest: Path,
                       add_uint32: dict[str, int] | None = None) -> None:
    """Copy ``src`` to ``dest`` leaving out the metadata keys in ``drop`` (and adding
    ``add_uint32`` keys); tensor records and data are copied byte for byte."""
    add = add_uint32 or {}
    kept = [k for k in layout.values if k not in drop and k not in add]
    with open(src, "rb") as f, open(dest, "wb") as out:
        raw = f.read(layout.tensor_table[1])
        out.write(_MAGIC + struct.pack("<IQQ", layout.version, len(layout.tensors), len(kept) + len(add)))
        for k in kept:
            a, b = layout.spans[k]
            out.write(raw[a:b])
        for k, v in add.items():
            out.write(_encode_kv(k, v))
        out.write(raw[layout.tensor_table[0]:layout.tensor_table[1]])
        align = int(layout.values.get("general.alignment", 32))
        out.write(b"\0" * (-out.tell() % align))
        f.seek(layout.data_start)
        shutil.copyfileobj(f, out, 16 << 20)
