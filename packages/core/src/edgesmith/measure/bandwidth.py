"""The machine's memory read bandwidth, measured once per bench.

Decoding one token reads every weight it uses once and writes almost
nothing, so the ceiling on decode speed is how fast memory can be *read*.
The kernel is a reduction (``np.maximum.reduce`` over an int32 view) of a
buffer far larger than any cache, split across threads: numpy releases the
GIL inside the reduction, so the threads really run in parallel. Of the
reductions tried (sum, max and count_nonzero over 1-, 4- and 8-byte views)
int32 max was the fastest with one thread, and with two whenever memory
had headroom (when it had none, they all met the same limit). The best of
several passes is reported, with one thread and with ``threads`` threads,
and the better of the two is kept.

A STREAM-style copy (bytes read + bytes written) is timed in the same call
for comparison only: it is what edgesmith reported before, and it comes out
lower than the read rate, as stores cost the memory system more than loads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from ..errors import UserError

#: Bytes of the buffer. 1 GiB is 32x the largest L3 of common desktop and laptop
#: parts, so every pass streams from DRAM.
DEFAULT_BYTES = 1 << 30
#: Passes per thread count. The ceiling is a maximum, and on a shared machine a
#: pass is often slowed by a neighbour: many short passes (25 ms each) find a quiet one.
PASSES = 20
#: Below this the threads' slices are too small to time.
MIN_BYTES = 1 << 20

METHOD = ("numpy maximum.reduce over an int32 view of a buffer far larger than the caches, split "
          "over threads: bytes read / best time of the passes, best of 1 and --threads threads")


def measure(threads: int = 1, nbytes: int = DEFAULT_BYTES, passes: int = PASSES) -> dict[str, Any]:
    """Read bandwidth (``gb_per_s``) and, for comparison, copy bandwidth of ``nbytes``.

    On a busy or virtual machine more threads can be slower than one; the
    ceiling is what the machine can deliver, so the better figure is kept.
    """
    import numpy as np

    if nbytes < MIN_BYTES or passes < 1:
        raise UserError(f"the bandwidth buffer must be at least {MIN_BYTES >> 20} MiB and passes at least 1; "
                        f"give a larger --bandwidth-mib")
    # Filled, not zeroed: a calloc'd buffer maps one shared zero page, which reads from cache.
    buf = np.ones(nbytes // 4, dtype=np.int32)
    counts = sorted({1, max(1, threads)})
    read_s = {t: _passes(_read_parts(buf, t), passes) for t in counts}
    copy_s = {t: _passes(_copy_parts(buf, t), passes) for t in counts}
    read_bytes, copy_bytes = buf.nbytes, len(buf) // 2 * 8  # a copy reads and writes half the buffer
    del buf
    best = min(counts, key=lambda t: min(read_s[t]))
    copy = {str(t): copy_bytes / min(s) / 1e9 for t, s in copy_s.items()}
    return {
        "gb_per_s": read_bytes / min(read_s[best]) / 1e9,
        "method": METHOD,
        "threads": best,
        "passes": passes,
        "array_bytes": read_bytes,
        "best_seconds": min(read_s[best]),
        "by_threads": {str(t): read_bytes / min(s) / 1e9 for t, s in read_s.items()},
        "runs": [read_bytes / s / 1e9 for s in read_s[best]],
        "copy_gb_per_s": max(copy.values()),
        "copy_by_threads": copy,
    }


def _split(n: int, parts: int) -> list[tuple[int, int]]:
    return [(i * n // parts, (i + 1) * n // parts) for i in range(parts)]


def _read_parts(buf: Any, threads: int) -> list[Callable[[], Any]]:
    import numpy as np

    return [lambda a=a, b=b: np.maximum.reduce(buf[a:b]) for a, b in _split(len(buf), threads)]


def _copy_parts(buf: Any, threads: int) -> list[Callable[[], Any]]:
    """Copy the first half of ``buf`` onto the second: no second buffer to allocate."""
    import numpy as np

    half = len(buf) // 2
    src, dst = buf[:half], buf[half:2 * half]
    return [lambda a=a, b=b: np.copyto(dst[a:b], src[a:b]) for a, b in _split(half, threads)]


def _passes(parts: list[Callable[[], Any]], passes: int) -> list[float]:
    """Seconds of each pass: every part on its own thread, all released at once."""
    seconds = []
    for _ in range(passes):
        start = threading.Barrier(len(parts) + 1)
        workers = [threading.Thread(target=_after, args=(start, p)) for p in parts]
        for w in workers:
            w.start()
        start.wait()
        t0 = time.perf_counter()
        for w in workers:
            w.join()
        seconds.append(time.perf_counter() - t0)
    return seconds


def _after(start: threading.Barrier, part: Callable[[], Any]) -> None:
    start.wait()
    part()
