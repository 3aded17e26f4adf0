"""Startup cost of `edgesmith backends` over a bare interpreter, side by side.

Runs `python -c pass` and `edgesmith backends --json` alternately N times in
one process tree and reports the medians and their difference. The target
(issue 2): under 0.5 s added with every backend installed.

    python benchmarks/startup.py [--repeat 15]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time

TARGET_S = 0.5


def timed(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()
    exe = shutil.which("edgesmith")
    cli = [exe] if exe else [sys.executable, "-m", "edgesmith.cli"]
    bare = [sys.executable, "-c", "pass"]
    listing = [*cli, "backends", "--json"]
    out = subprocess.run(listing, capture_output=True, text=True, check=True)
    names = [(r["name"], r["status"]) for r in json.loads(out.stdout)]
    timed(bare), timed(listing)  # warm the file cache
    a, b = [], []
    for _ in range(args.repeat):
        a.append(timed(bare))
        b.append(timed(listing))
    ma, mb = statistics.median(a), statistics.median(b)
    added = mb - ma
    print(f"backends found: {names}")
    print(f"python -c pass           median {ma * 1000:7.1f} ms  (min {min(a) * 1000:.1f})")
    print(f"edgesmith backends       median {mb * 1000:7.1f} ms  (min {min(b) * 1000:.1f})")
    verdict = "OK" if added < TARGET_S else "TOO SLOW"
    print(f"added by edgesmith       {added * 1000:7.1f} ms  target < {TARGET_S * 1000:.0f} ms: {verdict}")
    return 0 if added < TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
