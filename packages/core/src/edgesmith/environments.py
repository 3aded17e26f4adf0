"""Backend environments: one virtualenv per backend, registered under ``EDGESMITH_HOME``.

Stacks whose pins conflict (optimum-intel's transformers cap against
mlx-lm's floor, qai-hub's protobuf cap) each get their own interpreter;
``edgesmith install`` makes them (:mod:`edgesmith.envinstall`), this module
finds them and says what is in them.

Layout: ``HOME/envs/NAME/`` is a virtualenv. ``HOME/registry.json`` lists
every registered environment with what was installed in it; the installer
writes an entry only after the install finished, so a directory without
one is an install that stopped half-way, and an entry without its
directory is an environment deleted by hand: both are reported with the
fix. ``HOME/envs/NAME/edgesmith-describe.json`` caches what the
environment's own Python reported (:func:`describe`), keyed on the state of
the files it depends on, so listing backends starts no process once cached.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import attrs

HOME_ENV = "EDGESMITH_HOME"
#: Set in processes that run inside a backend environment: they use their own
#: backends only, and never look for (or describe) other environments.
LOCAL_ONLY_ENV = "EDGESMITH_LOCAL_ONLY"
REGISTRY = "registry.json"
CACHE = "edgesmith-describe.json"
#: Bumped when the description's fields change, so old caches are not trusted.
DESCRIBE_VERSION = 1


def home() -> Path:
    """Where edgesmith keeps its environments: ``EDGESMITH_HOME``, else the
    user's data directory (``$XDG_DATA_HOME/edgesmith``, ``~/.local/share/edgesmith``)."""
    if os.environ.get(HOME_ENV):
        return Path(os.environ[HOME_ENV]).expanduser()
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "edgesmith"
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "edgesmith"


def envs_dir() -> Path:
    return home() / "envs"


def python_in(path: Path) -> Path:
    """The interpreter of the virtualenv at ``path``."""
    return path / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


@attrs.frozen
class Environment:
    """One registered backend environment."""

    name: str
    path: Path
    #: What the installer recorded in the registry; empty when it never finished.
    marker: dict[str, Any] = attrs.field(factory=dict, eq=False)

    @property
    def python(self) -> Path:
        return python_in(self.path)

    def problem(self) -> str | None:
        """Why this environment cannot be used (with the fix), or None."""
        fix = f"run edgesmith install {self.marker.get('source') or self.name} --upgrade"
        if not self.marker:
            return f"its install did not finish ({self.path}); {fix}"
        if not self.path.is_dir():
            return f"its environment {self.path} is gone; {fix}"
        if not self.python.exists():
            return f"its Python is gone ({self.python}); {fix}"
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "path": str(self.path), "python": str(self.python),
                "source": self.marker.get("source"), "installed": self.marker.get("installed")}


def read_registry() -> dict[str, dict[str, Any]]:
    try:
        data = json.loads((home() / REGISTRY).read_text())
    except (OSError, ValueError):
        return {}
    return data.get("environments", {}) if isinstance(data, dict) else {}


def write_registry(entries: dict[str, dict[str, Any]]) -> None:
    """Replace the registry (callers hold the installer's claim on it)."""
    path = home() / REGISTRY
    tmp = path.with_name(f".{REGISTRY}.{os.getpid()}")
    tmp.write_text(json.dumps({"environments": entries}, indent=1, sort_keys=True))
    os.replace(tmp, path)


def registered() -> list[Environment]:
    """Every registered environment, and every directory under :func:`envs_dir`
    that an install left unfinished, by name."""
    if os.environ.get(LOCAL_ONLY_ENV):
        return []
    found = {name: Environment(name, envs_dir() / name, dict(marker)) for name, marker in read_registry().items()}
    try:
        dirs = [p for p in envs_dir().iterdir() if p.is_dir() and not p.name.startswith(".")]
    except OSError:
        dirs = []
    for path in dirs:
        found.setdefault(path.name, Environment(path.name, path, {}))
    return [found[n] for n in sorted(found)]


def find(name: str) -> Environment | None:
    return next((e for e in registered() if e.name == name), None)


# -- what is inside an environment ---------------------------------------------------


def _stamp(path: str) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_mtime_ns, st.st_size]


def _fresh(cached: dict[str, Any], env: Environment) -> bool:
    if cached.get("version") != DESCRIBE_VERSION or cached.get("python") != _stamp(str(env.python)):
        return False
    return all(_stamp(p) == s for p, s in cached.get("files", {}).items())


def describe(env: Environment, *, refresh: bool = False) -> dict[str, Any]:
    """What ``env``'s own Python reports about its backends (see
    :func:`edgesmith.envside.describe`), from the cache while the files it
    read are unchanged. Raises :class:`~edgesmith.errors.UserError` for a
    broken environment."""
    from .errors import UserError

    problem = env.problem()
    if problem:
        raise UserError(f"backend environment {env.name!r}: {problem}")
    cache = env.path / CACHE
    if not refresh:
        try:
            cached = json.loads(cache.read_text())
            if _fresh(cached, env):
                return cached
        except (OSError, ValueError):
            pass
    from . import worker

    answer = worker.run("edgesmith.envside:describe", {}, python=str(env.python), env=child_env(), timeout=120)
    if not answer.ok:
        raise UserError(f"backend environment {env.name!r} does not start: {answer.error}; "
                        f"run edgesmith install {env.marker.get('source') or env.name} --upgrade")
    described = dict(answer.result)
    # Keyed on what this description came from: the interpreter, the site
    # directories (any install or removal changes them) and every module file
    # the description imported (an edited editable install changes those).
    described["version"] = DESCRIBE_VERSION
    described["python"] = _stamp(str(env.python))
    described["files"] = {p: _stamp(p) for p in described.get("watch", []) if _stamp(p)}
    tmp = cache.with_name(f".{CACHE}.{os.getpid()}")
    try:
        tmp.write_text(json.dumps(described, indent=1))
        os.replace(tmp, cache)
    except OSError:  # a read-only environment still works, only slower to list
        tmp.unlink(missing_ok=True)
    return described


def child_env(threads: int | None = None) -> dict[str, str]:
    """The process environment of a job run in another backend environment."""
    from . import worker

    return worker.child_env(threads, same_environment=False, extra={LOCAL_ONLY_ENV: "1"})
