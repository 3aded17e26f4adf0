"""Recipes for tests of ``edgesmith optimize``: the least measuring that still
builds, benchmarks and evaluates every candidate (seconds, not minutes)."""

from __future__ import annotations

import json
from collections.abc import Sequence

#: One timed generation of 8 tokens after a 16-token prompt; two 64-token windows.
QUICK_MEASURING = """
[bench]
prompt_tokens = 16
gen_tokens = 8
repeat = 1
warmup = 0

[eval]
window = 64
windows = 2
smoke_tokens = 8
"""


def quick_recipe(targets: Sequence[str], *, prefer: str | None = None, extra: str = "") -> str:
    """A recipe (TOML) for ``targets`` with :data:`QUICK_MEASURING`; ``extra`` adds sections."""
    head = f"[optimize]\ntargets = {json.dumps(list(targets))}\n"
    if prefer:
        head += f'prefer = "{prefer}"\n'
    return head + extra + QUICK_MEASURING
