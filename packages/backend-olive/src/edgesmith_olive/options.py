"""Option parsing shared by the operations: known keys only, one-line errors."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from edgesmith.errors import UserError


def check_keys(options: Mapping[str, str], known: Iterable[str], op: str) -> None:
    known = sorted(known)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise UserError(
            f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} for olive {op}; "
            f"known: {', '.join(known) or 'none'}"
        )


def choice(options: Mapping[str, str], key: str, allowed: Iterable[str], default: str) -> str:
    value = str(options.get(key, default)).lower()
    allowed = list(allowed)
    if value not in allowed:
        raise UserError(f"option {key}={value} is not valid; use one of {', '.join(allowed)}")
    return value


def integer(options: Mapping[str, str], key: str, default: int | None = None) -> int | None:
    if key not in options:
        return default
    try:
        return int(options[key])
    except (TypeError, ValueError):
        raise UserError(f"option {key}={options[key]} is not a whole number; give e.g. {key}=4") from None
