"""Route llama.cpp's log output into Python while a call runs.

llama.cpp prints progress and errors to stderr; edgesmith shows one-line
errors instead, so we collect the lines and pick the relevant one.
"""

from __future__ import annotations

import contextlib
import ctypes
from collections.abc import Iterator

_keep: list = []  # the ctypes callback must outlive the C side's use of it


@contextlib.contextmanager
def capture_llama_log() -> Iterator[list[str]]:
    import llama_cpp

    lines: list[str] = []
    partial: list[str] = []

    @llama_cpp.llama_log_callback
    def _cb(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        partial.append(text.decode("utf-8", errors="replace"))
        joined = "".join(partial)
        if "\n" in joined:
            *done, rest = joined.split("\n")
            lines.extend(d for d in done if d.strip())
            partial[:] = [rest] if rest else []

    _keep.append(_cb)
    llama_cpp.llama_log_set(_cb, ctypes.c_void_p(0))
    try:
        yield lines
    finally:
        _restore()
        if partial and "".join(partial).strip():
            lines.append("".join(partial))


def _restore() -> None:
    import llama_cpp

    try:
        from llama_cpp._logger import llama_log_callback as default_cb
        llama_cpp.llama_log_set(default_cb, ctypes.c_void_p(0))
    except ImportError:  # pragma: no cover
        pass
