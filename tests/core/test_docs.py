"""Docs that match the code: the hook reference is generated from the
hookspecs (the backend guide's example runs in tests/e2e/test_guide_backend.py)."""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_hook_reference_is_current():
    sys.path.insert(0, str(DOCS))
    try:
        import gen_hooks
    finally:
        sys.path.remove(str(DOCS))
    assert (DOCS / "hooks.md").read_text() == gen_hooks.render(), "run: python docs/gen_hooks.py"


