"""Core tests run against a numpy reference backend discovered through a real
entry point: a dist-info directory on sys.path, exactly as pip would leave it."""

from __future__ import annotations

import importlib
import os
import shutil
import sys
from pathlib import Path

import pytest

from edgesmith.plugins import reset_manager

HERE = Path(__file__).parent


def make_site(root: Path, name: str, module: str, files: dict[str, str] | None = None,
              copy_ref: bool = False) -> Path:
    """A directory that looks like site-packages holding one edgesmith backend."""
    root.mkdir(parents=True, exist_ok=True)
    dist = f"edgesmith_{name}_test"
    info = root / f"{dist}-0.1.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[edgesmith]\n{name} = {module}\n")
    if copy_ref:
        shutil.copytree(HERE / "refbackend" / "edgesmith_ref", root / "edgesmith_ref", dirs_exist_ok=True)
    for rel, text in (files or {}).items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


@pytest.fixture(scope="session")
def ref_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_site(tmp_path_factory.mktemp("site-ref"), "ref", "edgesmith_ref.plugin", copy_ref=True)


@pytest.fixture(scope="package", autouse=True)
def with_ref_backend(ref_site: Path):
    sys.path.insert(0, str(ref_site))
    importlib.invalidate_caches()
    reset_manager()
    yield
    sys.path.remove(str(ref_site))
    for mod in [m for m in sys.modules if m.startswith("edgesmith_ref")]:
        del sys.modules[mod]
    reset_manager()


def env_with(*sites: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, **extra}
    env["PYTHONPATH"] = os.pathsep.join([*(str(s) for s in sites), env.get("PYTHONPATH", "")])
    return env
