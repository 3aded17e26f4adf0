"""What ``compile`` leaves beside the IR for ``load`` to read back
(``openvino_compiled.json``), and the device check both make."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgesmith.errors import UserError

COMPILED_INFO = "openvino_compiled.json"


def read_compiled(directory: Path) -> dict[str, Any]:
    """The compile record of an IR folder ({} when it was never compiled)."""
    f = directory / COMPILED_INFO
    if not f.exists():
        return {}
    try:
        return json.loads(f.read_text())
    except json.JSONDecodeError:
        raise UserError(f"{f} is corrupt; compile the model again") from None


def check_device(core: Any, device: str) -> str:
    """``device`` upper-cased, when OpenVINO sees it here (AUTO always passes)."""
    dev = device.upper()
    seen = list(core.available_devices)
    if dev == "AUTO":
        return dev
    if not any(d == dev or d.startswith(dev + ".") for d in seen):
        raise UserError(f"OpenVINO sees no {dev} device here (available: {', '.join(seen) or 'none'}); "
                        f"compile for one of those or install the {dev} driver")
    return dev
