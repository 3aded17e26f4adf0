"""The OpenVINO backend's vendor patches: version-gated, and nothing left behind by a job."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

import attrs
import pytest

from edgesmith import api, offline
from edgesmith.patches import applied
from edgesmith_openvino import patches as ov_patches
from edgesmith_openvino import stack


def _convert(tiny_encoder: Any, root: Path) -> Path:
    onnx_path = tiny_encoder(root / "onnx" / "model.onnx")
    api.convert(onnx_path.parent, "openvino", root / "ir", backend="openvino")
    return root / "ir"


def test_records_name_their_symbol_range_and_symptom() -> None:
    for p in ov_patches.PATCHES:
        assert p.applies() == (True, ""), p.name
        assert p.symbol and p.symptom and p.versions and p.upstream.startswith("https://")
    assert [p.name for p in ov_patches.PATCHES if p.process_wide] == ["openvino-telemetry-import-blocked"]


def test_patch_outside_its_version_range_is_skipped_with_the_reason(tiny_encoder, tmp_path, monkeypatch,
                                                                    caplog) -> None:
    # A record written for OpenVINO releases older than the installed one.
    old = attrs.evolve(ov_patches.TELEMETRY_IMPORT, versions="<2026")
    ok, why = old.applies()
    assert not ok and why.startswith("openvino ") and why.endswith("is outside <2026")
    seen: list[Any] = []
    real_scope = stack.telemetry_blocked

    def watched() -> Any:
        seen.append("entered")
        return real_scope()

    monkeypatch.setattr(ov_patches, "PATCHES", (attrs.evolve(old, scope=watched), ov_patches.TELEMETRY_MUTED))
    modules = {k: sys.modules.get(k, "absent") for k in ("openvino_telemetry", "openvino_telemetry.backend")}
    with caplog.at_level(logging.INFO, logger="edgesmith"):
        _convert(tiny_encoder, tmp_path)  # a real job under the backend's patches
    assert seen == []
    assert f"vendor patch openvino-telemetry-import-blocked skipped: {why}" in caplog.text
    assert {k: sys.modules.get(k, "absent") for k in modules} == modules


def test_import_block_is_undone_after_its_block() -> None:
    saved = {k: sys.modules.get(k, "absent") for k in ("openvino_telemetry", "openvino_telemetry.backend")}
    with applied([ov_patches.TELEMETRY_IMPORT]) as names:
        assert names == ["openvino-telemetry-import-blocked"]
        if saved["openvino_telemetry"] == "absent":
            with pytest.raises(ImportError):
                import openvino_telemetry  # noqa: F401
    assert {k: sys.modules.get(k, "absent") for k in saved} == saved


def test_muted_senders_are_put_back() -> None:
    # Imported outside any job, as the user's own code might.
    mod = pytest.importorskip("openvino_telemetry")
    real = {n: mod.Telemetry.__dict__[n] for n in ("send_event", "start_session", "force_shutdown")}
    with applied([ov_patches.TELEMETRY_MUTED]):
        assert all(mod.Telemetry.__dict__[n] is not f for n, f in real.items())
        assert mod.Telemetry.send_event(object(), "ovc", "version", "x") is None
    assert all(mod.Telemetry.__dict__[n] is f for n, f in real.items())


def _loggers() -> dict[str, tuple[Any, ...]]:
    found = {n: lg for n, lg in logging.Logger.manager.loggerDict.items() if isinstance(lg, logging.Logger)}
    return {n: (tuple(lg.handlers), lg.level, lg.propagate) for n, lg in {"": logging.getLogger(), **found}.items()}


def test_jobs_leave_cwd_loggers_modules_and_env_as_they_were(tiny_encoder, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("NNCF_CI", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.chdir(tmp_path)
    keys = list(offline.environment(ov_patches.STACK_ENV))
    telemetry = sys.modules.get("openvino_telemetry")
    senders = dict(vars(telemetry.Telemetry)) if telemetry is not None else None
    before = (os.getcwd(), _loggers(), dict(sys.modules), {k: os.environ.get(k) for k in keys})
    ir = _convert(tiny_encoder, tmp_path)
    api.quantize(ir, tmp_path / "int8", scheme="int8_asym", backend="openvino")
    cwd, loggers, modules, env = before
    assert os.getcwd() == cwd
    assert {k: os.environ.get(k) for k in keys} == env
    assert "NNCF_CI" not in os.environ
    now = _loggers()
    assert {n: (h, now[n]) for n, h in loggers.items() if now[n] != h} == {}
    assert [k for k in modules if k not in sys.modules] == []  # nothing imported before is gone
    assert [k for k, m in sys.modules.items() if m is None and modules.get(k, 0) is not None] == []
    if senders is not None:
        assert dict(vars(telemetry.Telemetry)) == senders
