"""Checking ``--option KEY=VALUE`` settings against the keys an operation knows."""

from __future__ import annotations

from collections.abc import Mapping

from edgesmith.errors import UserError


def check_keys(options: Mapping[str, str], known: Mapping[str, str], what: str) -> dict[str, str]:
    """Reject unknown keys, listing the known ones with what they do."""
    opts = {str(k).lower().replace("-", "_"): str(v) for k, v in options.items()}
    unknown = sorted(set(opts) - set(known))
    if unknown:
        listing = "; ".join(f"{k} ({v})" for k, v in known.items()) or "none"
        raise UserError(f"unknown option {', '.join(unknown)} for openvino {what}; known options: {listing}")
    return opts


def flag(opts: Mapping[str, str], key: str, default: bool | None = None) -> bool | None:
    if key not in opts:
        return default
    value = opts[key].strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise UserError(f"option {key}={opts[key]!r} is not a yes/no value; use {key}=true or {key}=false")


def number(opts: Mapping[str, str], key: str, kind: type, default: object = None) -> object:
    if key not in opts:
        return default
    try:
        return kind(opts[key])
    except ValueError:
        raise UserError(f"option {key}={opts[key]!r} is not a {kind.__name__}; give a number") from None
