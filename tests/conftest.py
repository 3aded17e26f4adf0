"""Suite-wide setup: the test kit's fixtures, and proof of what ran.

With ``EDGESMITH_REQUIRE_BACKENDS=name,...`` (``nox -s tests`` sets all five)
a skipped test fails the run unless it is on :data:`ALLOWED_SKIPS` with its
reason: a green suite then shows that every backend's tests really ran.
"""

from __future__ import annotations

import os

import pytest

pytest_plugins = ["edgesmith.testing.fixtures"]

#: Skips that are right on this kind of machine, by test id (the part before "[").
ALLOWED_SKIPS = {
    "tests/backends/mlx/test_mlx_runner.py::test_bad_run_options":
        "on macOS with Metal, device=gpu is a valid request, not a bad one",
    "tests/backends/openvino/test_openvino_compile.py::test_missing_device_lists_what_openvino_sees":
        "runs only where the device is absent; a machine with that GPU or NPU skips it",
}

_skipped: list[tuple[str, str]] = []


def _required() -> list[str]:
    return [b for b in os.environ.get("EDGESMITH_REQUIRE_BACKENDS", "").split(",") if b.strip()]


def pytest_sessionstart(session: pytest.Session) -> None:
    wanted = _required()
    if not wanted:
        return
    from edgesmith import api

    recs = {r.name: r for r in api.backends()}
    missing = [f"{n} ({recs[n].status}: {recs[n].reason})" if n in recs else f"{n} (not installed)"
               for n in wanted if n not in recs or not recs[n].usable]
    if missing:
        raise pytest.UsageError(f"EDGESMITH_REQUIRE_BACKENDS: not usable here: {'; '.join(missing)}")


def _record_skip(report: pytest.TestReport | pytest.CollectReport) -> None:
    if report.skipped and _required():
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _skipped.append((report.nodeid, reason))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _record_skip(report)


def pytest_collectreport(report: pytest.CollectReport) -> None:
    # A whole module skipped at import (pytest.importorskip of a missing stack).
    _record_skip(report)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    unexpected = [(n, r) for n, r in _skipped if n.split("[")[0] not in ALLOWED_SKIPS]
    if not unexpected:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    lines = [f"{len(unexpected)} test(s) skipped that must run when every backend is required:"]
    lines += [f"  {n}: {r}" for n, r in unexpected]
    if reporter:
        reporter.write_line("\n".join(lines), red=True)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
