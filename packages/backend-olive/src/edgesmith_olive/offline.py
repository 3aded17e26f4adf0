"""Keep Olive's telemetry inert, and Olive offline, for the length of a job.

Olive 0.13 reads ``OLIVE_DISABLE_TELEMETRY=1`` only *after* its telemetry
singleton has already queued a heartbeat event (device id, OS) for upload, so
the variable alone is not enough. For the job we therefore put an inert
singleton in place: it has no logger, so nothing is queued, no exporter thread
starts and no device-id file is written. Olive fetches the singleton each
time it logs an event, so putting the previous one back afterwards leaves
nothing of ours behind. The variable is set as well (:data:`OLIVE_ENV`, added
to the core's offline environment for every job) for ``olive`` processes the
job starts.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

#: Olive's own switch, on top of :data:`edgesmith.offline.OFFLINE_ENV`.
OLIVE_ENV = {"OLIVE_DISABLE_TELEMETRY": "1"}


@contextlib.contextmanager
def inert_telemetry() -> Iterator[None]:
    """For the block, Olive's telemetry singleton is one that drops every event."""
    from olive.telemetry import telemetry as olive_telemetry

    cls = olive_telemetry.Telemetry
    saved = cls.__dict__.get("_instance")
    inert = object.__new__(cls)
    inert.__dict__.update(_initialized=True, _logger=None, _cache_handler=None)
    cls._instance = inert
    try:
        yield
    finally:
        cls._instance = saved


def telemetry_is_silenced() -> bool:
    """True when the singleton Olive would use now cannot queue events (for tests)."""
    try:
        from olive.telemetry import telemetry as olive_telemetry
    except ImportError:
        return True
    inst = getattr(olive_telemetry.Telemetry, "_instance", None)
    return inst is not None and getattr(inst, "_logger", None) is None
