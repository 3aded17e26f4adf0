"""Typed backend options: one spec, one parser, one error shape.

A backend declares the ``-O KEY=VALUE`` settings each operation takes as
:class:`Option` records; :func:`parse` checks the raw values (strings from the
CLI or recipes, or Python values from the API) before any work starts and
returns them typed, with defaults filled in. Every bad key or value gives the
same one-line error naming the backend, the operation, the problem and what
is accepted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from .errors import UserError

#: Kinds of value an option can hold.
KINDS = ("int", "float", "bool", "str", "choice", "dtype")

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")

#: One dtype vocabulary for every backend: canonical name -> accepted spellings.
DTYPE_ALIASES: dict[str, tuple[str, ...]] = {
    "f32": ("f32", "fp32", "float32", "float"),
    "f16": ("f16", "fp16", "float16", "half"),
    "bf16": ("bf16", "bfloat16"),
}


def canonical_dtype(value: str) -> str | None:
    """``"float16"`` → ``"f16"``; ``None`` for a name outside the shared vocabulary."""
    v = str(value).strip().lower()
    for name, spellings in DTYPE_ALIASES.items():
        if v in spellings:
            return name
    return None


@attrs.frozen
class Option:
    """One backend setting.

    ``kind`` is one of :data:`KINDS`. ``choice`` takes ``choices``; ``dtype``
    takes ``choices`` too, as canonical names (``f32``, ``f16``, ``bf16`` or a
    backend's own, such as ``q8_0``) and accepts every alias of them. ``int``
    and ``float`` take an inclusive ``min``/``max``. ``default`` is what the
    backend uses when the key is absent (``None``: the stack's own default).
    """

    name: str
    kind: str
    help: str
    default: Any = None
    choices: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    min: float | None = None
    max: float | None = None

    def __attrs_post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"option {self.name}: kind {self.kind!r} is not one of {KINDS}")
        if self.kind in ("choice", "dtype") and not self.choices:
            raise ValueError(f"option {self.name}: kind {self.kind} needs choices")

    def accepted(self) -> str:
        """What values are accepted, for errors and listings."""
        if self.kind in ("choice", "dtype"):
            return "one of " + ", ".join(self.choices)
        if self.kind == "bool":
            return "true or false"
        if self.kind in ("int", "float"):
            word = "a whole number" if self.kind == "int" else "a number"

            def show(v: float | None) -> str:
                if v is None:
                    return ""
                return str(int(v)) if self.kind == "int" or float(v).is_integer() else f"{v:g}"

            lo, hi = show(self.min), show(self.max)
            if lo and hi:
                return f"{word} from {lo} to {hi}"
            if lo:
                return f"{word} of at least {lo}"
            if hi:
                return f"{word} of at most {hi}"
            return word
        return "text"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "help": self.help, "default": self.default,
                "choices": list(self.choices), "min": self.min, "max": self.max,
                "accepted": self.accepted()}

    def convert(self, raw: Any) -> Any:
        """The typed value of ``raw``; ``ValueError`` with the reason when it is not valid."""
        if self.kind == "bool":
            if isinstance(raw, bool):
                return raw
            v = str(raw).strip().lower()
            if v in _TRUE:
                return True
            if v in _FALSE:
                return False
            raise ValueError(self.accepted())
        if self.kind in ("int", "float"):
            return self._number(raw)
        text = str(raw).strip()
        if self.kind == "choice":
            v = text.lower()
            for c in self.choices:
                if c.lower() == v:
                    return c
            raise ValueError(self.accepted())
        if self.kind == "dtype":
            v = canonical_dtype(text) or text.lower()
            if v in self.choices:
                return v
            raise ValueError(self.accepted())
        if not text:
            raise ValueError("a non-empty value")
        return text

    def _number(self, raw: Any) -> int | float:
        if isinstance(raw, bool):
            raise ValueError(self.accepted())
        try:
            if self.kind == "int":
                if isinstance(raw, float) and not raw.is_integer():
                    raise ValueError
                value: int | float = int(raw.strip()) if isinstance(raw, str) else int(raw)
            else:
                value = float(raw)
                if value != value or value in (float("inf"), float("-inf")):
                    raise ValueError
        except (TypeError, ValueError):
            raise ValueError(self.accepted()) from None
        if (self.min is not None and value < self.min) or (self.max is not None and value > self.max):
            raise ValueError(self.accepted())
        return value


def _key(name: Any) -> str:
    return str(name).strip().lower().replace("-", "_")


def parse(specs: Sequence[Option], raw: Mapping[str, Any] | None, *, backend: str,
          operation: str, defaults: bool = True) -> dict[str, Any]:
    """Check ``raw`` against ``specs``; the typed values (and, with ``defaults``,
    every absent option's default that is not ``None``)."""
    by_name = {o.name: o for o in specs}
    who = f"{backend} {operation}"
    out: dict[str, Any] = {}
    for key, value in (raw or {}).items():
        name = _key(key)
        spec = by_name.get(name)
        if spec is None:
            known = ", ".join(sorted(by_name)) or "none"
            raise UserError(f"{who} has no option {key!r}; known options: {known} "
                            f"(see `edgesmith backends {backend}`)")
        try:
            out[name] = spec.convert(value)
        except ValueError as exc:
            raise UserError(f"{who}: option {name}={value!s} is not valid; give {exc}") from None
    if defaults:
        for spec in specs:
            if spec.name not in out and spec.default is not None:
                out[spec.name] = spec.default
    return out


def merge(*groups: Iterable[Option]) -> tuple[Option, ...]:
    """Concatenate option groups; a name declared twice is a backend bug."""
    seen: dict[str, Option] = {}
    for group in groups:
        for o in group:
            if o.name in seen:
                raise ValueError(f"option {o.name} declared twice")
            seen[o.name] = o
    return tuple(seen.values())


__all__ = ["DTYPE_ALIASES", "KINDS", "Option", "canonical_dtype", "merge", "parse"]
