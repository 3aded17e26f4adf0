"""Generate docs/hooks.md from edgesmith.hookspecs (tests check it is current).

    python docs/gen_hooks.py          # rewrite docs/hooks.md
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

HEADER = """# Hook reference

Generated from `edgesmith/hookspecs.py` by `python docs/gen_hooks.py`; a test
fails when this file and the hookspecs disagree. Implement hooks with
`@edgesmith.hookimpl` in the module your entry point names (group
`edgesmith`). See `backend-guide.md` for a complete example.

"""


def render() -> str:
    from edgesmith import hookspecs

    out = [HEADER, "## Module notes\n\n", inspect.getdoc(hookspecs) + "\n\n"]
    for name, fn in inspect.getmembers(hookspecs, inspect.isfunction):
        if not name.startswith("edgesmith_"):
            continue
        opts = getattr(fn, "edgesmith_spec", {}) or {}
        first = " (first result wins)" if opts.get("firstresult") else ""
        sig = str(inspect.signature(fn)).replace("'", "")
        out.append(f"## `{name}`{first}\n\n```python\ndef {name}{sig}\n```\n\n")
        out.append(inspect.getdoc(fn) + "\n\n")
    return "".join(out).rstrip() + "\n"


if __name__ == "__main__":
    target = Path(__file__).with_name("hooks.md")
    target.write_text(render())
    print(f"wrote {target}", file=sys.stderr)
