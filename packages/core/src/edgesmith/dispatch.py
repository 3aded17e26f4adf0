"""Choosing the backend for a job from declared capabilities.

With a named backend only that one is asked. Otherwise the core picks among
usable backends that declare the capability and says which it picked (and
why). When nobody can, one error lists what the installed backends can do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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

    def handler(self) -> Callable[..., Any]:
        """The operation's handler: imported here, or a stand-in that runs it in
        the backend's own environment (:mod:`edgesmith.remote`)."""
        env = self.record.environment
        if env is None:
            return self.op.resolve()
        from .remote import handler

        return handler(env, self.name, self.op)


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


Refusal = Callable[[Operation], "str | None"]


def _matching(info: BackendInfo, kind: str, source: str, fmt: str | None,
              refuse: Refusal | None, reasons: list[str]) -> list[Operation]:
    """The operations that take the request; why the others of that kind and formats do not."""
    ok = []
    for o in info.ops(kind, source, fmt):
        why = refuse(o) if refuse else None
        if why:
            reasons.append(f"{info.name} {why}")
        else:
            ok.append(o)
    return ok


def with_architecture(refuse: Refusal | None, architecture: str | None) -> Refusal | None:
    """``refuse`` that also refuses operations which do not take ``architecture``."""
    if not architecture:
        return refuse
    from .architectures import refusal

    def both(op: Operation) -> str | None:
        return refusal(op, architecture) or (refuse(op) if refuse else None)

    return both


def _elsewhere(records: list[BackendRecord], kind: str, source: str, fmt: str | None,
               refuse: Refusal | None) -> str:
    """Operations from another source format that would take the request, as a hint."""
    if refuse is None:
        return ""
    hits = [f"{r.name} {o.label}" for r in records if r.info for o in r.info.ops(kind)
            if o.source != source and (fmt is None or o.format == fmt) and not refuse(o)]
    return f"; from another format: {', '.join(hits)}" if hits else ""


def choose(
    manager: BackendManager,
    kind: str,
    source: str,
    *,
    fmt: str | None = None,
    backend: str | None = None,
    refuse: Refusal | None = None,
    what: str | None = None,
    architecture: str | None = None,
) -> Choice:
    """Pick the backend and the declared operation for ``kind`` on a ``source``-format model.

    ``fmt`` restricts the output format (convert). ``refuse(op)`` is the
    request-specific test (a native scheme name, a device): it returns why
    the operation cannot take the request, or ``None``. ``what`` is the
    human description of the request used in errors. ``architecture`` (the
    model's model_type) refuses operations that do not declare it.
    """
    refuse = with_architecture(refuse, architecture)
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
        reasons: list[str] = []
        ops = _matching(rec.info, kind, source, fmt, refuse, reasons)
        if not ops:
            detail = "; ".join(reasons) if reasons else f"it can: {describe_capabilities([rec])}"
            raise UnsupportedError(f"backend {backend!r} cannot {what}: {detail}"
                                   f"{_elsewhere(records, kind, source, fmt, refuse)}")
        return Choice(rec, _prefer_same_format(ops, source), "named with --backend")

    candidates: list[tuple[int, str, BackendRecord, Operation]] = []
    reasons = []
    for rec in records:
        if not rec.usable:
            continue
        ops = _matching(rec.info, kind, source, fmt, refuse, reasons)
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
        # A broken backend environment cannot say what it offers; its reason names the fix.
        broken = [r.reason for r in records if r.environment is not None and r.info is None and r.reason]
        if broken:
            hint += "; " + "; ".join(broken)
        if reasons:
            raise UnsupportedError(f"no installed backend can {what}: {'; '.join(reasons)}{hint}"
                                   f"{_elsewhere(records, kind, source, fmt, refuse)}")
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
