"""Deployment targets: which stack serves a kind of device, and what to try on it.

A target names the backend(s) that make the best artifact for a device, the
format that ends up deployed, how to make the unquantized base (also the
quality reference), and the candidates to compare. The backends contribute
them (the ``edgesmith_optimize_targets`` hook), so the core names none;
recipes override any of it or add targets of their own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs

from ..errors import UserError

log = logging.getLogger("edgesmith")


@attrs.frozen
class Candidate:
    """One way to quantize the base; ``label`` names its folder and table row."""

    label: str
    bits: int | None = None
    group_size: int | None = None
    scheme: str | None = None
    method: str | None = None
    symmetric: bool | None = None
    ratio: float | None = None
    #: a text or input file; recipes may say ``true`` to use the recipe's calibration file
    calibration: str | None = None
    options: Mapping[str, str] = attrs.field(factory=dict)

    def quantize_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :func:`edgesmith.api.quantize`."""
        kw = {"bits": self.bits, "group_size": self.group_size, "scheme": self.scheme,
              "method": self.method, "symmetric": self.symmetric, "ratio": self.ratio,
              "calibration": self.calibration, "options": dict(self.options)}
        return {k: v for k, v in kw.items() if v is not None and v != {}}


def _always(machine: Any) -> bool:
    return True


def _never_declines(machine: Any, model: Path) -> str | None:
    return None


@attrs.frozen
class Target:
    """A kind of device and how to make the best artifact for it."""

    name: str
    title: str
    device: str
    #: preference order; the first usable one that generates ``format`` is used
    backends: tuple[str, ...] = attrs.field(converter=tuple)
    format: str
    base_options: Mapping[str, str] = attrs.field(factory=dict)
    candidates: tuple[Candidate, ...] = attrs.field(default=(), converter=tuple)
    #: compile every candidate for this device afterwards (``None``: no compile step)
    compile: str | None = None
    #: whether this machine is the device (otherwise speeds are a stand-in)
    present: Callable[[Any], bool] = attrs.field(default=_always, eq=False, repr=False)
    #: base options used instead when the device is present (the device's own build)
    device_options: Mapping[str, str] = attrs.field(factory=dict)
    #: a target to use when none of ``backends`` can generate text here, and why
    fallback: str | None = None
    #: targets for the same device planned beside this one and measured in its table, so the
    #: choice between stacks is made from numbers (snapdragon-npu: llama.cpp on the Snapdragon
    #: CPU, which on real devices sometimes decodes faster than the NPU); when this target's
    #: own backend cannot take the model, they are planned alone
    competitors: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    #: why this target's own backend is not planned for ``model`` on ``machine``, or None
    #: (e.g. a simulated device that would take hours on a model this size)
    declines: Callable[[Any, Path], str | None] = attrs.field(default=_never_declines, eq=False, repr=False)
    #: selectable with ``--target NAME`` (False: only as another target's fallback)
    offered: bool = True
    #: order in listings and in ``--target all`` (lower first)
    rank: int = 50


def known_targets(manager: Any = None) -> dict[str, Target]:
    """Every target the registered backends contribute, in rank order."""
    from ..plugins import get_manager

    manager = manager or get_manager()
    found: dict[str, Target] = {}
    for backend, targets in manager.contributions("edgesmith_optimize_targets"):
        for t in targets:
            if not isinstance(t, Target):
                log.warning("backend %s contributed %r, not a Target; ignored", backend, t)
            elif t.name in found:
                log.warning("target %s is contributed twice; keeping %s's", t.name, found[t.name].backends[0])
            else:
                found[t.name] = t
    return dict(sorted(found.items(), key=lambda kv: (kv[1].rank, kv[0])))


def offered(known: Mapping[str, Target]) -> list[str]:
    """Names ``--target`` accepts (besides ``auto`` and ``all``)."""
    return [n for n, t in known.items() if t.offered]


def resolve(names: list[str], machine: Any, known: Mapping[str, Target],
            rules: list[Any] | None = None) -> tuple[list[str], str]:
    """Expand ``auto``/``all`` into target names; returns (names, how they were chosen).
    ``auto`` follows doctor's ``rules`` (default: the installed backends')."""
    from ..doctor import choose_stack

    out: list[str] = []
    how = []
    for name in names:
        if name == "all":
            out += offered(known)
            how.append("all: every target")
        elif name == "auto":
            backend, why = choose_stack(machine, rules)
            target = next((n for n in offered(known) if known[n].backends[:1] == (backend,)), None)
            if target is None:
                raise UserError(f"auto: no installed backend offers a target for this machine ({why}); "
                                f"name one with --target (offered: {', '.join(offered(known)) or 'none'})")
            out.append(target)
            how.append(f"auto: {target} ({why})")
        elif name in known and known[name].offered:
            out.append(name)
        else:
            choices = ", ".join(["auto", *offered(known), "all"])
            raise UserError(f"unknown target {name!r}; choose one of {choices} (targets come from the "
                            f"installed backends: see `edgesmith backends`)")
    seen: list[str] = []
    for n in out:
        if n not in seen:
            seen.append(n)
    return seen, "; ".join(how)
