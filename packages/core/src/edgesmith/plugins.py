"""Backend discovery: entry points in the group ``edgesmith``, isolated failures.

One broken backend (import error, bad hook signature, misspelled hook, a
crashing ``edgesmith_backend``) is recorded as ``failed`` with its error and
never stops the CLI or the other backends from working.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import logging
import os
import sys
from collections.abc import Iterable
from importlib import metadata
from types import ModuleType
from typing import TYPE_CHECKING, Any

import attrs
import pluggy

from . import hookspecs
from .types import BackendInfo

if TYPE_CHECKING:
    from .environments import Environment

log = logging.getLogger("edgesmith")

ENTRY_POINT_GROUP = "edgesmith"
DISABLE_ENV = "EDGESMITH_DISABLE_BACKENDS"

#: Operation hooks of the first contract, now Operation records.
_REMOVED_HOOKS = ("edgesmith_convert", "edgesmith_quantize", "edgesmith_compile", "edgesmith_run")

#: Status values shown by ``edgesmith backends``.
AVAILABLE, UNAVAILABLE, FAILED, DISABLED = "available", "unavailable", "failed", "disabled"


@attrs.frozen
class BackendRecord:
    """What the core knows about one registered (or attempted) backend."""

    name: str
    status: str
    reason: str | None = None
    info: BackendInfo | None = None
    distribution: str | None = None
    distribution_version: str | None = None
    module: str | None = None
    #: The registered environment it lives in; None: this process's own.
    environment: Environment | None = None
    #: That environment's Python version and its vendor versions (from its description).
    python_version: str | None = None
    libraries: dict[str, str | None] | None = None

    @property
    def usable(self) -> bool:
        return self.status == AVAILABLE

    @property
    def where(self) -> str:
        return str(self.environment.path) if self.environment else "this environment"

    def to_dict(self) -> dict[str, Any]:
        import platform

        d: dict[str, Any] = {
            "name": self.name,
            "status": self.status,
            "reason": self.reason,
            "distribution": self.distribution,
            "distribution_version": self.distribution_version,
            "module": self.module,
            "environment": self.environment.to_dict() if self.environment else None,
            "python_version": self.python_version if self.environment else platform.python_version(),
            "libraries": backend_libraries(self),
        }
        d.update({"capabilities": self.info.to_dict() if self.info else None})
        return d


class BackendManager(pluggy.PluginManager):
    """A PluginManager that keeps a record per backend and isolates failures."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT)
        self.add_hookspecs(hookspecs)
        self.records: dict[str, BackendRecord] = {}

    # -- registration ---------------------------------------------------------

    def load_entry_points(self, disabled: Iterable[str] = ()) -> None:
        disabled = {d.strip() for d in disabled if d.strip()}
        for ep in _entry_points():
            dist = getattr(ep, "dist", None)
            meta = {
                "distribution": dist.metadata["Name"] if dist else None,
                "distribution_version": dist.version if dist else None,
                "module": ep.value,
            }
            if ep.name in disabled:
                self.records[ep.name] = BackendRecord(
                    ep.name, DISABLED, f"blocked by {DISABLE_ENV}", **meta
                )
                continue
            if ep.name in self.records:
                log.warning("backend %s registered twice; keeping the first (%s)", ep.name,
                            self.records[ep.name].module)
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # a backend's import error must not spread
                self._failed(ep.name, f"import failed: {type(exc).__name__}: {exc}", meta)
                continue
            self.add_backend(plugin, ep.name, **meta)

    def load_environments(self, disabled: Iterable[str] = ()) -> None:
        """Add the backends of every registered environment that this one lacks
        (:mod:`edgesmith.environments`); a broken environment is a ``failed``
        record naming the fix."""
        from . import environments

        disabled = {d.strip() for d in disabled if d.strip()}
        for env in environments.registered():
            try:
                described = environments.describe(env)
            except Exception as exc:  # noqa: BLE001 - one environment's trouble stays its own
                # Under the names of the backends it held when installed, so `-b NAME` finds the reason.
                for name in env.marker.get("backends") or [env.name]:
                    if name not in self.records:
                        self.records[name] = BackendRecord(name, FAILED, str(exc), environment=env)
                continue
            for entry in described.get("backends", []):
                if entry["name"] in self.records:
                    log.debug("backend %s is installed here; its environment %s is not used",
                              entry["name"], env.path)
                    continue
                if entry["name"] in disabled:
                    self.records[entry["name"]] = BackendRecord(entry["name"], DISABLED, f"blocked by {DISABLE_ENV}",
                                                                environment=env)
                    continue
                self._add_from(env, entry, described)

    def _add_from(self, env: Environment, entry: dict[str, Any], described: dict[str, Any]) -> None:
        """Register a backend of another environment: its light declaration
        modules are imported here (only its own package, from that environment),
        its status and versions are what its environment reported."""
        meta = {"distribution": entry.get("distribution"), "distribution_version": entry.get("distribution_version"),
                "module": entry.get("module"), "environment": env,
                "python_version": described.get("python_version"), "libraries": entry.get("libraries") or {}}
        name = entry["name"]
        fix = f"run edgesmith install {env.marker.get('source') or env.name} --upgrade"
        if not entry.get("package") or entry["status"] == FAILED:
            self.records[name] = BackendRecord(name, FAILED, entry.get("reason") or f"it does not load; {fix}",
                                               **meta)
            return
        _ENV_PACKAGES.add(entry["package"], entry["search_path"])
        try:
            plugin = importlib.import_module(entry["module"].partition(":")[0])
        except Exception as exc:  # noqa: BLE001
            self._failed(name, f"its declarations in {env.path} do not import here: "
                               f"{type(exc).__name__}: {exc}; {fix}", meta)
            return
        self.add_backend(plugin, name, status=(entry["status"], entry.get("reason")), **meta)

    def add_backend(self, plugin: ModuleType | object, name: str, *,
                    status: tuple[str, str | None] | None = None, **meta: Any) -> BackendRecord:
        """Register one backend object or module under ``name`` and describe it;
        ``status`` (with its reason) is given for a backend of another environment,
        whose availability check must run there."""
        try:
            self.register(plugin, name=name)
        except Exception as exc:  # wrong hook signature, duplicate, ...
            return self._failed(name, f"registration failed: {exc}", meta)
        try:
            # Misspelled hooks (edgesmith_convrt) have no spec: reject the plugin.
            self.check_pending()
        except pluggy.PluginValidationError as exc:
            self.unregister(name=name)
            removed = [h for h in _REMOVED_HOOKS if h in str(exc)]
            if removed:
                return self._failed(name, f"it implements {removed[0]}, a hook of the first backend "
                                          f"contract; declare Operation records on BackendInfo instead "
                                          f"(see docs/backend-guide.md)", meta)
            return self._failed(name, f"registration failed: {exc}", meta)
        impls = [i for i in self.hook.edgesmith_backend.get_hookimpls() if i.plugin_name == name]
        if not impls:
            self.unregister(name=name)
            return self._failed(name, "it does not implement edgesmith_backend()", meta)
        try:
            info = impls[0].function()
            if not isinstance(info, BackendInfo):
                raise TypeError(f"edgesmith_backend() returned {type(info).__name__}, not BackendInfo")
            if info.name != name:
                raise ValueError(f"entry point is named {name!r} but the backend calls itself {info.name!r}")
        except Exception as exc:
            self.unregister(name=name)
            return self._failed(name, f"edgesmith_backend() failed: {exc}", meta)
        if status is not None:
            state, reason = status
        else:
            try:
                reason = info.check()
            except Exception as exc:
                reason = f"availability check failed: {type(exc).__name__}: {exc}"
            state = AVAILABLE if reason is None else UNAVAILABLE
        rec = BackendRecord(name, state, reason, info, **meta)
        self.records[name] = rec
        return rec

    def contributions(self, hook_name: str, only: str | None = None, **kwargs: Any) -> list[tuple[str, Any]]:
        """``(backend, result)`` of ``hook_name`` from every registered backend (or
        ``only`` that one) that implements it, in name order; one backend's failure
        is logged and skipped."""
        out = []
        impls = sorted(getattr(self.hook, hook_name).get_hookimpls(), key=lambda i: i.plugin_name)
        for impl in impls:
            if only is not None and impl.plugin_name != only:
                continue
            rec = self.records.get(impl.plugin_name)
            if rec is None or rec.info is None:
                continue
            try:
                result = impl.function(**kwargs)
            except Exception as exc:  # noqa: BLE001 - a broken contribution must not spread
                log.warning("backend %s: %s() failed: %s: %s", impl.plugin_name, hook_name,
                            type(exc).__name__, exc)
                continue
            if result is not None:
                out.append((impl.plugin_name, result))
        return out

    def _failed(self, name: str, reason: str, meta: dict[str, Any]) -> BackendRecord:
        log.warning(
            "backend %s (%s %s) failed to load: %s",
            name, meta.get("distribution"), meta.get("distribution_version"), reason,
        )
        rec = BackendRecord(name, FAILED, reason, None, **meta)
        self.records[name] = rec
        return rec


def backend_libraries(record: BackendRecord) -> dict[str, str | None]:
    """The vendor versions ``record``'s backend runs with: read here, or as
    its own environment reported them."""
    if record.environment is not None:
        return dict(record.libraries or {})
    from .util import library_versions

    return library_versions(record.info.libraries) if record.info else {}


class _EnvPackages(importlib.abc.MetaPathFinder):
    """Finds the top-level package of a backend that lives in another
    environment, and nothing else of that environment (its vendor stack must
    not mix with this one); submodules follow from the package's own path."""

    def __init__(self) -> None:
        self.paths: dict[str, str] = {}

    def add(self, package: str, search_path: str) -> None:
        self.paths.setdefault(package, search_path)
        if self not in sys.meta_path:
            sys.meta_path.append(self)  # last: a package of this environment wins

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        where = self.paths.get(fullname)
        return importlib.machinery.PathFinder.find_spec(fullname, [where]) if where else None


_ENV_PACKAGES = _EnvPackages()


def _entry_points() -> list[metadata.EntryPoint]:
    eps = metadata.entry_points(group=ENTRY_POINT_GROUP)
    return sorted(eps, key=lambda ep: ep.name)


_manager: BackendManager | None = None


def get_manager() -> BackendManager:
    """The process-wide manager, loading entry points on first use."""
    global _manager
    if _manager is None:
        m = BackendManager()
        disabled = os.environ.get(DISABLE_ENV, "").split(",")
        m.load_entry_points(disabled)
        m.load_environments(disabled)
        _manager = m
    return _manager


def reset_manager(manager: BackendManager | None = None) -> None:
    """Forget the loaded backends (tests), or install a prepared manager."""
    global _manager
    _manager = manager
