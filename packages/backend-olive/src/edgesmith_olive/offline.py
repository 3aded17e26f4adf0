"""Keep Olive and the Hugging Face stack offline and quiet about usage data.

Olive 0.13 reads ``OLIVE_DISABLE_TELEMETRY=1`` only *after* its telemetry
singleton has already queued a heartbeat event (device id, OS) for upload, so
the variable alone is not enough. Before any Olive module that logs events is
imported we therefore put an inert singleton in place: it has no logger, so
nothing is queued, no exporter thread starts and no device id file is
written. The variable is set as well, for ``olive`` processes started later.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

#: Environment every Olive job runs under (restored afterwards).
OFFLINE_ENV = {
    "OLIVE_DISABLE_TELEMETRY": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
}

_silenced = False


def silence_olive_telemetry() -> bool:
    """Install a telemetry singleton that drops every event. Returns True when done."""
    global _silenced
    os.environ["OLIVE_DISABLE_TELEMETRY"] = "1"
    if _silenced:
        return True
    try:
        from olive.telemetry import telemetry as olive_telemetry
    except ImportError:  # a future Olive without this module has nothing to silence here
        _silenced = True
        return True
    cls = getattr(olive_telemetry, "Telemetry", None)
    if cls is None:
        _silenced = True
        return True
    existing = getattr(cls, "_instance", None)
    if existing is not None and getattr(existing, "_logger", None) is not None:
        # Someone created the real one first: switch it off as well as it allows.
        existing.disable_telemetry()
    inert = object.__new__(cls)
    inert.__dict__.update(_initialized=True, _logger=None, _cache_handler=None)
    cls._instance = inert
    _silenced = True
    return True


def telemetry_is_silenced() -> bool:
    """True when Olive's telemetry singleton cannot queue events (for tests)."""
    try:
        from olive.telemetry import telemetry as olive_telemetry
    except ImportError:
        return True
    inst = getattr(olive_telemetry.Telemetry, "_instance", None)
    return inst is not None and getattr(inst, "_logger", None) is None


@contextlib.contextmanager
def offline_env() -> Iterator[None]:
    """Run a block with every hub client offline; restore the environment after."""
    saved = {k: os.environ.get(k) for k in OFFLINE_ENV}
    os.environ.update(OFFLINE_ENV)
    try:
        yield
    finally:
        for key, value in saved.items():
            if key == "OLIVE_DISABLE_TELEMETRY":
                continue  # stays off for the life of the process
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
