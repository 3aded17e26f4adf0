"""What the vendor loops share: their command line and their answer file.

The driver gives every loop the same things: the artifact, the prompt as
token ids (the ones edgesmith's bench feeds), how many tokens to generate,
the thread count and how many warm-up and timed repeats. A loop writes one
JSON object to ``--out`` (stdout is left to the vendor libraries' chatter).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def parse(doc: str, extra: Sequence[tuple[str, dict[str, Any]]] = ()) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--artifact", required=True, type=Path)
    ap.add_argument("--prompt-ids", type=Path, help='JSON list of prompt token ids (or {"ids": [...]})')
    ap.add_argument("--gen-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", type=Path, required=True)
    for flag, kw in extra:
        ap.add_argument(flag, **kw)
    return ap.parse_args()


def prompt_ids(args: argparse.Namespace) -> list[int]:
    data = json.loads(args.prompt_ids.read_text())
    return [int(t) for t in (data["ids"] if isinstance(data, dict) else data)]


def rate(stamps: Sequence[float]) -> float | None:
    """Tokens/s between the first and the last stamp: (n - 1) / (t_n - t_1),
    the definition edgesmith's decode_tps uses, for the loop's own stamps."""
    if len(stamps) < 2 or stamps[-1] <= stamps[0]:
        return None
    return (len(stamps) - 1) / (stamps[-1] - stamps[0])


def write(args: argparse.Namespace, result: dict[str, Any]) -> None:
    result.setdefault("python", sys.version.split()[0])
    args.out.write_text(json.dumps(result))
