"""Each backend page's operations-and-options reference is generated from the
backend's declared operations: a page that disagrees with the code fails here
(regenerate with `python docs/gen_options.py`)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
sys.path.insert(0, str(DOCS))
import gen_options  # noqa: E402

sys.path.remove(str(DOCS))


@pytest.mark.parametrize("name", ["llamacpp", "olive", "openvino", "mlx", "qnn", "transformers"])
def test_options_reference_is_current(name):
    page = DOCS / "backends" / f"{name}.md"
    text = page.read_text()
    assert gen_options.BEGIN in text, f"{page} has no generated block: run python docs/gen_options.py"
    assert gen_options.updated(text, gen_options.render(name)) == text, "run: python docs/gen_options.py"


def test_a_changed_option_fails_the_check():
    block = gen_options.render("llamacpp")
    stale = block.replace("n_ctx", "n_context")
    text = f"# page\n\n{stale}\n"
    assert gen_options.updated(text, block) != text
