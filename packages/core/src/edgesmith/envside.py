"""What runs inside a backend environment on behalf of an edgesmith elsewhere.

Called through :mod:`edgesmith.worker` by :mod:`edgesmith.remote` (the parent
side): :func:`describe` says what the environment holds, :func:`produce`
runs one convert, quantize or compile handler into the parent's staging
directory. The parent keeps everything that decides what is safe (output
claims, manifests, option parsing); the handler runs here with the same
arguments it gets in a single environment.
"""

from __future__ import annotations

import importlib.util
import platform
import site
import sys
from pathlib import Path
from typing import Any

from .errors import BackendError, UserError
from .types import Artifact, Context, Operation, QuantSpec


def describe(payload: dict[str, Any]) -> dict[str, Any]:
    """Every backend this environment's entry points give, with its status,
    vendor versions and where its package lives (so the parent can import
    its light declaration modules), and the files that key the cache."""
    from . import __version__
    from .plugins import BackendManager
    from .util import library_versions

    manager = BackendManager()
    manager.load_entry_points()
    watch = [d for d in {*site.getsitepackages(), site.getusersitepackages()} if Path(d).is_dir()]
    out = []
    for rec in sorted(manager.records.values(), key=lambda r: r.name):
        entry = {"name": rec.name, "status": rec.status, "reason": rec.reason,
                 "distribution": rec.distribution, "distribution_version": rec.distribution_version,
                 "module": rec.module, "libraries": {}, "package": None, "search_path": None}
        if rec.info:
            entry["libraries"] = library_versions(rec.info.libraries)
        top = (rec.module or "").partition(":")[0].split(".")[0]
        spec = importlib.util.find_spec(top) if top else None
        if spec is not None and spec.submodule_search_locations:
            pkg_dir = Path(next(iter(spec.submodule_search_locations)))
            entry["package"], entry["search_path"] = top, str(pkg_dir.parent)
            watch += [m.__file__ for m in list(sys.modules.values())
                      if getattr(m, "__file__", None) and Path(m.__file__).is_relative_to(pkg_dir)]
        out.append(entry)
    return {"core": __version__, "python_version": platform.python_version(),
            "executable": sys.executable, "backends": out, "watch": sorted(set(watch))}


def _operation(backend: str, kind: str, label: str) -> Operation:
    from .plugins import get_manager

    rec = get_manager().records.get(backend)
    if rec is None or rec.info is None:
        raise UserError(f"backend {backend} is not installed in this environment ({sys.prefix}); "
                        f"run edgesmith install {backend} --upgrade")
    if not rec.usable:
        raise UserError(f"backend {backend} is {rec.status} here: {rec.reason}")
    for op in rec.info.operations:
        if op.kind == kind and op.label == label:
            return op
    raise UserError(f"backend {backend} here has no operation {label!r}; its environment holds another "
                    f"version: run edgesmith install {backend} --upgrade")


def artifact(d: dict[str, Any]) -> Artifact:
    return Artifact(Path(d["path"]), d["format"], d.get("entry"), d.get("manifest"), d.get("details") or {})


def artifact_dict(a: Artifact) -> dict[str, Any]:
    return {"path": str(a.path), "format": a.format, "entry": a.entry, "manifest": a.manifest,
            "details": dict(a.details)}


def context(d: dict[str, Any]) -> Context:
    from .worker import progress

    def report(description: str, completed: float | None = None, total: float | None = None) -> None:
        progress(description, completed, total)

    return Context(progress=report, **d)


def produce(payload: dict[str, Any]) -> dict[str, Any]:
    """Run one convert/quantize/compile handler; the result's artifact as a dict."""
    op = _operation(payload["backend"], payload["kind"], payload["label"])
    extra: tuple[Any, ...] = ()
    if op.kind == "quantize":
        extra = (QuantSpec(**payload["spec"]),)
    elif op.kind == "compile":
        extra = (payload["device"],)
    result = op.resolve()(artifact(payload["source"]), *extra, payload["options"], Path(payload["output"]),
                          context(payload["context"]))
    if not isinstance(result, Artifact):
        raise BackendError(f"backend {payload['backend']} returned {type(result).__name__}, not an Artifact")
    return artifact_dict(result)


def load(payload: dict[str, Any]) -> Any:
    """The runner of a load handler (for :mod:`edgesmith.runnerhost`)."""
    op = _operation(payload["backend"], "load", payload["label"])
    return op.resolve()(artifact(payload["artifact"]), payload["options"], context(payload["context"]))
