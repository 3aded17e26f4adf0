"""Recipes for tests of ``edgesmith optimize``: the least measuring that still
builds, benchmarks and evaluates every candidate (seconds, not minutes)."""

from __future__ import annotations

import json
from collections.abc import Sequence

#: Two timed generations of 8 tokens after a 16-token prompt (two, so speeds have
#: a spread); one round of eight 64-token windows (an interval with 7 degrees of freedom).
QUICK_MEASURING = """
[bench]
prompt_tokens = 16
gen_tokens = 8
repeat = 2
warmup = 0

[eval]
window = 64
max_tokens = 512
smoke_tokens = 8
"""


def quick_recipe(targets: Sequence[str], *, prefer: str | None = None, extra: str = "") -> str:
    """A recipe (TOML) for ``targets`` with :data:`QUICK_MEASURING`; ``extra`` adds sections."""
    head = f"[optimize]\ntargets = {json.dumps(list(targets))}\n"
    if prefer:
        head += f'prefer = "{prefer}"\n'
    return head + extra + QUICK_MEASURING
