from __future__ import annotations

import pytest

from edgesmith.errors import OutputExistsError
from edgesmith.manifest import TMP_MARK, atomic_output


def test_exception_removes_temporary(tmp_path):
    out = tmp_path / "o"
    with pytest.raises(RuntimeError):
        with atomic_output(out, force=False) as tmp:
            (tmp / "half.bin").write_bytes(b"x")
            raise RuntimeError("boom")
    assert not out.exists() and not list(tmp_path.glob(f"*{TMP_MARK}*"))


def test_force_replaces_whole_directory(tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "old").write_text("1")
    with pytest.raises(OutputExistsError):
        with atomic_output(out, force=False):
            pass
    with atomic_output(out, force=True) as tmp:
        (tmp / "new").write_text("2")
    assert sorted(p.name for p in out.iterdir()) == ["new"]
    assert not list(tmp_path.glob(f"*{TMP_MARK}*"))
