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
from .types import BackendInfo, Operation


@attrs.frozen
class Choice:
    record: BackendRecord
    op: Operation
    why: str

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def target(self) -> str:
        return self.op.format


def describe_capabilities(records: list[BackendRecord]) -> str:
    """One line listing what each backend can do, for "nobody can" errors."""
    parts = []
    for rec in records:
        if not rec.info:
            parts.append(f"{rec.name} ({rec.status})")
            continue
        info = rec.info
        ops = []
        for kind, pairs in (("convert", info.converts), ("quantize", info.quantizes),
                            ("compile", info.compiles)):
            if pairs:
                ops.append(f"{kind} " + ", ".join(f"{a}->{b}" for a, b in pairs))
        if info.runs:
            ops.append("run " + ", ".join(info.runs))
        state = "" if rec.usable else f" [{rec.status}]"
        parts.append(f"{rec.name}{state}: " + ("; ".join(ops) or "nothing yet"))
    return " | ".join(parts) if parts else "no backends are installed (pip install edgesmith-llamacpp, ...)"


def _matching(info: BackendInfo, kind: str, source: str, fmt: str | None,
              accept: Callable[[Operation], bool] | None) -> list[Operation]:
    return [o for o in info.ops(kind, source, fmt) if accept is None or accept(o)]


def choose(
    manager: BackendManager,
    kind: str,
    source: str,
    *,
    fmt: str | None = None,
    backend: str | None = None,
    accept: Callable[[Operation], bool] | None = None,
    what: str | None = None,
) -> Choice:
    """Pick the backend and the declared operation for ``kind`` on a ``source``-format model.

    ``fmt`` restricts the output format (convert). ``accept`` adds a
    request-specific test on the operation (a native scheme name, a device).
    ``what`` is the human description of the request used in errors.
    """
    verb = "run" if kind == "load" else kind
    what = what or (f"{verb} {source}" + (f" to {fmt}" if fmt else ""))
    records = list(manager.records.values())
    if backend is not None:
        rec = manager.records.get(backend)
        if rec is None:
            known = ", ".join(sorted(manager.records)) or "none"
            raise UserError(f"no backend named {backend!r} is installed (installed: {known}); "
                            f"see `edgesmith backends`")
        if not rec.usable:
            raise UserError(f"backend {backend!r} is {rec.status}: {rec.reason}")
        ops = _matching(rec.info, kind, source, fmt, accept)
        if not ops:
            raise UnsupportedError(
                f"backend {backend!r} cannot {what}; it can: {describe_capabilities([rec])}"
            )
        return Choice(rec, _prefer_same_format(ops, source), "named with --backend")

    candidates: list[tuple[int, str, BackendRecord, Operation]] = []
    for rec in records:
        if not rec.usable:
            continue
        ops = _matching(rec.info, kind, source, fmt, accept)
        if not ops:
            continue
        # Prefer keeping the format (quantize gguf -> gguf) over changing it.
        best = _prefer_same_format(ops, source)
        candidates.append((0 if best.format == source else 1, rec.name, rec, best))
    if not candidates:
        unusable = [r for r in records if not r.usable and r.info and r.info.ops(kind, source, fmt)]
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


def _prefer_same_format(ops: list[Operation], source: str) -> Operation:
    """Keeping the format first (quantize gguf -> gguf), then weight-only before static."""
    return min(ops, key=lambda o: (o.format != source, o.activations))
