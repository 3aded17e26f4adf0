"""Parsing ``--option KEY=VALUE`` settings for each operation."""

from __future__ import annotations

from collections.abc import Mapping

from edgesmith.errors import UserError

#: Option keys each operation accepts (``shape`` everywhere: the NPU needs static shapes).
KNOWN = {
    "convert": ("shape",),
    "quantize": ("shape", "per_channel", "calibrate_method", "samples", "tokenizer",
                 "keep_activations", "placement", "mask_value"),
    "compile": ("shape", "soc_model", "htp_arch", "htp_performance_mode", "cpu_fallback",
                "embed", "mask_value",
                # Qualcomm AI Hub (hub.py): compile on the service for a real device.
                "hub_device", "hub_os", "hub_options", "hub_profile", "hub_timeout"),
    "run": ("cpu_fallback", "soc_model", "htp_arch", "htp_performance_mode"),
}

PERFORMANCE_MODES = ("default", "burst", "balanced", "high_performance", "high_power_saver",
                     "low_balanced", "low_power_saver", "power_saver", "extreme_power_saver",
                     "sustained_high_performance")


def check_keys(op: str, options: Mapping[str, str]) -> dict[str, str]:
    """Options for ``op`` as a plain dict; unknown keys are a UserError.

    ``dtype`` is a named flag the core may pass to every convert; it has no
    meaning for ONNX graphs here, so only its absence or ``auto`` is accepted.
    """
    opts = {str(k): str(v) for k, v in (options or {}).items()}
    dtype = opts.pop("dtype", None)
    if dtype not in (None, "", "auto", "None"):
        raise UserError(f"qnn {op} does not change weight dtypes (got dtype={dtype}); "
                        f"use `edgesmith quantize` for QDQ quantization")
    unknown = sorted(set(opts) - set(KNOWN[op]))
    if unknown:
        raise UserError(f"unknown qnn {op} option(s) {', '.join(unknown)}; "
                        f"known: {', '.join(KNOWN[op])}")
    return opts


def flag(opts: Mapping[str, str], key: str, default: bool) -> bool:
    value = opts.get(key)
    if value is None:
        return default
    low = value.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise UserError(f"option {key}={value} is not a yes/no value; use {key}=1 or {key}=0")


def integer(opts: Mapping[str, str], key: str, default: int | None) -> int | None:
    value = opts.get(key)
    if value is None:
        return default
    try:
        n = int(value)
    except ValueError:
        raise UserError(f"option {key}={value} is not a whole number; e.g. {key}=16") from None
    if n < 1:
        raise UserError(f"option {key}={value} must be at least 1")
    return n


def parse_shapes(text: str | None) -> dict[str, tuple[int, ...]]:
    """``input_ids:1x128,attention_mask:1x128`` -> {name: (1, 128)}."""
    if not text:
        return {}
    shapes: dict[str, tuple[int, ...]] = {}
    for part in text.replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, dims = part.rpartition(":")
        try:
            if not sep or not name:
                raise ValueError
            shape = tuple(int(d) for d in dims.lower().split("x"))
            if any(d < 1 for d in shape):
                raise ValueError
        except ValueError:
            raise UserError(f"cannot read shape setting {part!r}; write NAME:DIMxDIM, "
                            f"e.g. --option shape=input_ids:1x128") from None
        shapes[name] = shape
    return shapes
