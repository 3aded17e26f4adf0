"""Backend discovery: entry points in the group ``edgesmith``, isolated failures.

One broken backend (import error, bad hook signature, misspelled hook, a
crashing ``edgesmith_backend``) is recorded as ``failed`` with its error and
never stops the CLI or the other backends from working.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from importlib import metadata
from types import ModuleType
from typing import Any

import attrs
import pluggy

from . import hookspecs
from .types import BackendInfo

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

    @property
    def usable(self) -> bool:
        return self.status == AVAILABLE

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "name": self.name,
            "status": self.status,
            "reason": self.reason,
            "distribution": self.distribution,
            "distribution_version": self.distribution_version,
            "module": self.module,
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

    def add_backend(self, plugin: ModuleType | object, name: str, **meta: Any) -> BackendRecord:
        """Register one backend object or module under ``name`` and describe it."""
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
        try:
            reason = info.check()
        except Exception as exc:
            reason = f"availability check failed: {type(exc).__name__}: {exc}"
        status = AVAILABLE if reason is None else UNAVAILABLE
        rec = BackendRecord(name, status, reason, info, **meta)
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


def _entry_points() -> list[metadata.EntryPoint]:
    eps = metadata.entry_points(group=ENTRY_POINT_GROUP)
    return sorted(eps, key=lambda ep: ep.name)


_manager: BackendManager | None = None


def get_manager() -> BackendManager:
    """The process-wide manager, loading entry points on first use."""
    global _manager
    if _manager is None:
        m = BackendManager()
        m.load_entry_points(os.environ.get(DISABLE_ENV, "").split(","))
        _manager = m
    return _manager


def reset_manager(manager: BackendManager | None = None) -> None:
    """Forget the loaded backends (tests), or install a prepared manager."""
    global _manager
    _manager = manager
