"""Vendor patches as a registry: what each fixes, for which versions, and for how long.

A backend that has to work around an upstream bug declares the fix as a
:class:`Patch`: the upstream symbol it changes, the distribution and version
range it was written for (checked when the job runs: outside it the patch is
skipped with a logged reason, since upstream may have fixed or moved the
code), the symptom with its measured effect, and where upstream tracks it.
``scope()`` applies it for a ``with`` block and undoes it afterwards; a patch
that cannot be undone says so with ``process_wide=True`` and is listed as
such in the backend guide.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from importlib import metadata

import attrs

log = logging.getLogger("edgesmith")


@attrs.frozen
class Patch:
    name: str
    #: the upstream symbol it replaces or wraps (``package.module:Class.method``)
    symbol: str
    #: the distribution whose installed version gates it, and the range it was written for
    distribution: str
    versions: str
    #: what goes wrong without it, with the measured effect
    symptom: str
    #: applies the patch for a ``with`` block and undoes it afterwards: a callable, or
    #: ``"module:function"`` (imported when applied, so a registry never imports the
    #: modules whose jobs apply it)
    scope: str | Callable[[], AbstractContextManager[object]] = attrs.field(eq=False, repr=False)
    #: where upstream tracks the bug, when known
    upstream: str = ""
    #: True when the change stays for the rest of the process
    process_wide: bool = False

    def applies(self) -> tuple[bool, str]:
        """Whether the installed version is in range, and why not."""
        try:
            version = metadata.version(self.distribution)
        except metadata.PackageNotFoundError:
            return False, f"{self.distribution} is not installed"
        try:
            from packaging.specifiers import SpecifierSet
            from packaging.version import Version

            ok = Version(version) in SpecifierSet(self.versions)
        except Exception as exc:  # noqa: BLE001 - a malformed range must not break the job
            return False, f"cannot compare {self.distribution} {version} with {self.versions!r} ({exc})"
        return ok, "" if ok else f"{self.distribution} {version} is outside {self.versions}"

    def enter(self) -> AbstractContextManager[object]:
        """The patch's context manager (its scope function called)."""
        scope = self.scope
        if isinstance(scope, str):
            import importlib

            module, _, name = scope.partition(":")
            scope = getattr(importlib.import_module(module), name)
        return scope()

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "symbol": self.symbol, "distribution": self.distribution,
                "versions": self.versions, "symptom": self.symptom, "upstream": self.upstream,
                "process_wide": self.process_wide}


@contextlib.contextmanager
def applied(patches: Iterable[Patch]) -> Iterator[list[str]]:
    """Apply, for the block, every patch whose version range holds; yields their names.
    The others are skipped with the reason logged."""
    names = []
    with contextlib.ExitStack() as stack:
        for p in patches:
            ok, why = p.applies()
            if not ok:
                log.info("vendor patch %s skipped: %s (it was written for %s %s)", p.name, why,
                         p.distribution, p.versions)
                continue
            stack.enter_context(p.enter())
            names.append(p.name)
        yield names
