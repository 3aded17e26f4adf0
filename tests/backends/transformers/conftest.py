"""Shared setup for the transformers backend tests: tiny checkpoints from the test
kit (tests/conftest.py's fixtures), run by the real transformers and torch on the CPU."""

from __future__ import annotations

import pytest

pytest.importorskip("transformers", reason="edgesmith-transformers is not installed with its stack")
pytest.importorskip("torch", reason="edgesmith-transformers is not installed with its stack")
