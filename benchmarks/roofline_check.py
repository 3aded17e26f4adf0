"""Check that no artifact of an `edgesmith optimize` run decodes faster than memory allows.

    python benchmarks/roofline_check.py .edgesmith-demo     # what `nox -s demo` runs last

For every measured row of summary.json: decode mean ± sd, the bytes one decoded
token reads (bench's count) and the roofline fraction against the run's
measured read bandwidth. Exit 1 when a fraction is above 100 % (the count or
the bandwidth would then be wrong), else 0; the fastest artifact's fraction
is printed last.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("output", type=Path, help="an `edgesmith optimize -o` directory")
    args = ap.parse_args()
    s = json.loads((args.output / "summary.json").read_text())
    bw = s["bandwidth"]
    print(f"memory read bandwidth {bw['gb_per_s']:.1f} GB/s ({bw['method']}); "
          f"copy {bw.get('copy_gb_per_s') or float('nan'):.1f} GB/s")
    rows, seen = [], set()
    for t in s["targets"]:
        for r in t["rows"]:
            if r.get("roofline_fraction") is not None and r["key"] not in seen:
                seen.add(r["key"])
                rows.append(r)
    if not rows:
        print("no measured rows with a roofline fraction", file=sys.stderr)
        return 1
    bad = []
    for r in sorted(rows, key=lambda r: -r["roofline_fraction"]):
        d = r.get("decode") or {}
        frac = r["roofline_fraction"]
        print(f"{r['key']:32s} {d.get('mean', r['decode_tps']):8.1f} ± {d.get('sd') or 0:5.1f} tok/s "
              f"(n={d.get('n', '?')})  {100 * frac:5.1f} % of bandwidth")
        if frac > 1.0:
            bad.append(r["key"])
    fastest = max(rows, key=lambda r: r["decode_tps"])
    print(f"fastest: {fastest['key']} at {100 * fastest['roofline_fraction']:.1f} % of the bandwidth")
    if bad:
        print(f"roofline above 100 %: {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
