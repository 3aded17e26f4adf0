"""The OpenVINO backend's vendor patches, as records (see :mod:`edgesmith.patches`).

The fix code is in :mod:`.stack`. :func:`job` runs a handler under the
core's offline environment (with NNCF's switch) and these patches, and puts
the environment, ``sys.modules`` and the patched methods back afterwards.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from edgesmith import offline
from edgesmith.patches import Patch, applied

#: The stack's own switch, on top of :data:`edgesmith.offline.OFFLINE_ENV`:
#: NNCF swaps in its telemetry stub when it sees this, even if openvino_telemetry loaded.
STACK_ENV = {"NNCF_CI": "1"}

TELEMETRY_IMPORT = Patch(
    name="openvino-telemetry-import-blocked",
    symbol="openvino_telemetry (imported by openvino.tools.ovc.telemetry_utils and "
           "nncf.telemetry.wrapper)",
    distribution="openvino",
    versions="==2026.4.*",
    symptom="openvino_telemetry is opt-out: without a consent file one ov.convert_model call (also "
            "inside optimum-intel's export) queues 6 usage events for upload (version, CLI "
            "parameters, conversion method, op count, result) and writes ~/intel/openvino_ga_cid "
            "(a client id) and ~/intel/stats; blocked while the stack is first imported, the "
            "converter and NNCF fall back to their no-op stubs and nothing is written",
    scope="edgesmith_openvino.stack:telemetry_blocked",
    upstream="https://github.com/openvinotoolkit/openvino/issues/34588",
    # sys.modules is restored, but modules first imported under it keep their stub.
    process_wide=True,
)

TELEMETRY_MUTED = Patch(
    name="openvino-telemetry-muted",
    symbol="openvino_telemetry:Telemetry.send_event (and start_session, end_session, send_error, "
           "send_stack_trace, force_shutdown)",
    distribution="openvino-telemetry",
    versions="==2025.2.*",
    symptom="when openvino_telemetry was imported before the first job (by the user's code), the "
            "converter holds the real sender and the same events would go out; its send methods "
            "are no-ops for the job",
    scope="edgesmith_openvino.stack:telemetry_muted",
    upstream="https://github.com/openvinotoolkit/openvino/issues/34588",
)

#: Every patch of this backend, in the order they are applied.
PATCHES = (TELEMETRY_IMPORT, TELEMETRY_MUTED)

F = TypeVar("F", bound=Callable[..., Any])


def job(handler: F) -> F:
    """Run ``handler`` offline, with NNCF's switch and the vendor patches, all
    undone when it returns or fails."""

    @functools.wraps(handler)
    def run(*args: Any, **kwargs: Any) -> Any:
        with offline.applied(extra=STACK_ENV), applied(PATCHES):
            return handler(*args, **kwargs)

    return run  # type: ignore[return-value]
