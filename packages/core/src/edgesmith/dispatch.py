"""Choosing the backend for a job from declared capabilities.

With a named backend only that one is asked. Otherwise the core picks among
usable backends that declare the capability and says which it picked (and
why). When nobody can, one error lists what the installed backends can do.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

from .errors import UnsupportedError, UserError
from .plugins import BackendManager, BackendRecord
from .types import BackendInfo


@attrs.frozen
class Choice:
    record: BackendRecord
    target: str
    why: str

    @property
    def name(self) -> str:
        return self.record.name


def _offers(info: BackendInfo, op: str, source: str) -> list[str]:
    """Target formats ``info`` declares for ``op`` from ``source``."""
    if op == "run":
        return [source] if source in info.runs else []
    pairs = {"convert": info.converts, "quantize": info.quantizes, "compile": info.compiles}[op]
    return [b for a, b in pairs if a == source]


def describe_capabilities(records: list[BackendRecord]) -> str:
    """One line listing what each backend can do, for "nobody can" errors."""
    parts = []
    for rec in records:
        if not rec.info:
            parts.append(f"{rec.name} ({rec.status})")
            continue
        info = rec.info
        ops = []
        for op, pairs in (("convert", info.converts), ("quantize", info.quantizes),
                          ("compile", info.compiles)):
            if pairs:
                ops.append(f"{op} " + ", ".join(f"{a}->{b}" for a, b in pairs))
        if info.runs:
            ops.append("run " + ", ".join(info.runs))
        state = "" if rec.usable else f" [{rec.status}]"
        parts.append(f"{rec.name}{state}: " + ("; ".join(ops) or "nothing yet"))
    return " | ".join(parts) if parts else "no backends are installed (pip install edgesmith-llamacpp, ...)"


def choose(
    manager: BackendManager,
    op: str,
    source: str,
    *,
    target: str | None = None,
    backend: str | None = None,
    accept: Callable[[BackendInfo], bool] | None = None,
    what: str | None = None,
) -> Choice:
    """Pick the backend for ``op`` on a ``source``-format model.

    ``target`` restricts the output format (convert). ``accept`` adds a
    request-specific test (a native scheme name, a device). ``what`` is the
    human description of the request used in errors.
    """
    what = what or (f"{op} {source}" + (f" to {target}" if target else ""))
    records = list(manager.records.values())
    if backend is not None:
        rec = manager.records.get(backend)
        if rec is None:
            known = ", ".join(sorted(manager.records)) or "none"
            raise UserError(f"no backend named {backend!r} is installed (installed: {known}); "
                            f"see `edgesmith backends`")
        if not rec.usable:
            raise UserError(f"backend {backend!r} is {rec.status}: {rec.reason}")
        targets = _offers(rec.info, op, source)
        if target is not None:
            targets = [t for t in targets if t == target]
        if not targets or (accept and not accept(rec.info)):
            raise UnsupportedError(
                f"backend {backend!r} cannot {what}; it can: {describe_capabilities([rec])}"
            )
        return Choice(rec, targets[0], "named with --backend")

    candidates: list[tuple[int, str, BackendRecord, str]] = []
    for rec in records:
        if not rec.usable:
            continue
        targets = _offers(rec.info, op, source)
        if target is not None:
            targets = [t for t in targets if t == target]
        if not targets or (accept and not accept(rec.info)):
            continue
        # Prefer keeping the format (quantize gguf -> gguf) over changing it.
        best = source if source in targets else targets[0]
        candidates.append((0 if best == source else 1, rec.name, rec, best))
    if not candidates:
        unusable = [r for r in records if not r.usable and r.info and _offers(r.info, op, source)]
        hint = ""
        if unusable:
            hint = "; " + ", ".join(f"{r.name} could but is {r.status}: {r.reason}" for r in unusable)
        raise UnsupportedError(
            f"no installed backend can {what}{hint}; installed backends can: "
            f"{describe_capabilities(records)}"
        )
    candidates.sort(key=lambda c: (c[0], c[1]))
    _, name, rec, best = candidates[0]
    others = [c[1] for c in candidates[1:]]
    why = f"it can {what}" + (f" (also possible: {', '.join(others)}; choose with --backend)"
                              if others else "")
    return Choice(rec, best, why)
