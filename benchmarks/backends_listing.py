"""`edgesmith backends` with registered backend environments, beside a bare `python -c pass`.

Times, interleaved in the same run, ``python -c pass`` and ``edgesmith
backends --json`` (and the table) with the environments registered in
``EDGESMITH_HOME`` (``nox -s tests`` leaves five in ``.nox/edgesmith-home``):
cached, as every listing after the first is, and cold (each environment's
description cache removed first, so each one's Python is asked again).
Goal: cached, under 0.5 s more than the bare interpreter.

    EDGESMITH_HOME=.nox/edgesmith-home python benchmarks/backends_listing.py [--repeats 10]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path


def once(argv: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def show(name: str, t: list[float]) -> None:
    sd = statistics.stdev(t) if len(t) > 1 else 0.0
    print(f"  {name:34s} {statistics.mean(t):7.3f} s ± {sd:.3f} (n={len(t)}, min {min(t):.3f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args()
    from edgesmith import environments

    envs = [e for e in environments.registered() if not e.problem()]
    listed = json.loads(subprocess.run([sys.executable, "-m", "edgesmith.cli", "backends", "--json"],
                                       capture_output=True, text=True, check=True).stdout)
    here = sum(1 for r in listed if not r["environment"])
    print(f"{len(envs)} environments in {environments.envs_dir()}; {len(listed)} backends listed "
          f"({len(listed) - here} from environments, {here} from this one)")
    if len(envs) < 5:
        print("  note: the goal is stated for five environments (run nox -s tests first)")
    cli = [sys.executable, "-m", "edgesmith.cli", "backends"]
    bare, cached, table = [], [], []
    for _ in range(args.repeats):  # interleaved, so load on the machine hits all alike
        bare.append(once([sys.executable, "-c", "pass"]))
        cached.append(once([*cli, "--json"]))
        table.append(once(cli))
    cold = []
    for _ in range(min(args.repeats, 3)):
        for e in envs:
            Path(e.path / environments.CACHE).unlink(missing_ok=True)
        cold.append(once([*cli, "--json"]))
    print("Times per run:")
    show("python -c pass", bare)
    show("edgesmith backends --json (cached)", cached)
    show("edgesmith backends (table, cached)", table)
    show("edgesmith backends --json (cold)", cold)
    extra = statistics.mean(cached) - statistics.mean(bare)
    print(f"  cached listing costs {extra:.3f} s more than the bare interpreter; goal under 0.5 s -> "
          f"{'met' if extra < 0.5 else 'NOT met'}")


if __name__ == "__main__":
    main()
