"""Bench and eval of the plan's artifacts through the measure commands, with
every result kept under ``.optimize/measure`` and keyed by what it depends on
(artifact content hashes, settings, edgesmith version), so a rerun measures
only what is new or changed."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from .. import __version__
from ..measure.gates import Gates
from .execute import Hashes


class Cache:
    def __init__(self, root: Path, hashes: Hashes):
        self.dir = root / ".optimize" / "measure"
        self.hashes = hashes

    def key(self, kind: str, paths: list[Path], settings: dict[str, Any]) -> str:
        doc = {"kind": kind, "content": [self.hashes(p) for p in paths], "settings": settings,
               "edgesmith": __version__}
        digest = hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()
        return f"{kind}-{digest[:20]}"

    def get(self, key: str) -> Any:
        f = self.dir / f"{key}.json"
        try:
            return json.loads(f.read_text())
        except (OSError, ValueError):
            return None

    def put(self, key: str, value: Any) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / f".{key}.json.part"
        tmp.write_text(json.dumps(value, indent=1, default=str))
        os.replace(tmp, self.dir / f"{key}.json")  # a killed run never leaves half a result


def bandwidth(cache: Cache, threads: int) -> dict[str, Any]:
    from ..measure import bandwidth as bw

    # the method is part of the key: a figure measured another way is not reused
    key = cache.key("bandwidth", [], {"threads": threads, "method": bw.METHOD})
    found = cache.get(key)
    if found is None:
        found = bw.measure(threads)
        cache.put(key, found)
    return found


def bench_one(cache: Cache, path: Path, backend: str | None, settings: dict[str, Any], threads: int,
              bw: dict[str, Any], say: Any) -> tuple[dict[str, Any], bool]:
    """(bench row, whether it came from the cache)."""
    from ..measure.bench import bench

    cfg = {**settings, "threads": threads, "backend": backend}
    key = cache.key("bench", [path], cfg)
    found = cache.get(key)
    if found is not None:
        return found, True
    doc = bench([path], threads=threads, backend=backend, bandwidth_result=bw, progress=say,
                text=settings.get("text"), **{k: settings[k] for k in ("prompt_tokens", "gen_tokens",
                                                                       "repeat", "warmup")})
    row = doc["artifacts"][0]
    row["_settings"] = doc["settings"]
    if row["status"] == "ok":  # failures are retried on the next run
        cache.put(key, row)
    return row, False


def eval_target(cache: Cache, reference: Path, paths: list[Path], backend: str | None,
                settings: dict[str, Any], gates: Gates, threads: int, speeds: dict[str, dict[str, Any]],
                say: Any) -> tuple[dict[str, Any], dict[str, dict[str, Any]], bool]:
    """(reference record, rows by path, whether all came from the cache)."""
    from ..measure.evaluate import evaluate

    cfg = {**settings, "threads": threads, "backend": backend, "gates": gates.to_dict()}
    ref_key = cache.key("eval-ref", [reference], cfg)
    keys = {p: cache.key("eval", [reference, p], {**cfg, "speed": speeds.get(str(p)),
                                                 "ref_speed": speeds.get(str(reference))})
            for p in paths}
    ref = cache.get(ref_key)
    rows = {p: cache.get(k) for p, k in keys.items()}
    if ref is not None and all(r is not None for r in rows.values()):
        return ref, {str(p): r for p, r in rows.items()}, True
    missing = [p for p, r in rows.items() if r is None]
    doc = evaluate(missing or [reference], reference, text=settings.get("text"), window=settings["window"],
                   max_windows=settings.get("windows"), max_tokens=settings["max_tokens"],
                   smoke_tokens=settings["smoke_tokens"], gates=gates,
                   threads=threads, backend=backend, speeds=speeds, progress=say,
                   tasks=settings.get("tasks"), task_limit=settings.get("limit"),
                   max_task_drop=settings.get("max_task_drop"))
    ref = {**doc["reference"], "_settings": doc["settings"]}
    cache.put(ref_key, ref)
    for p, row in zip(missing, doc["artifacts"], strict=False):
        rows[p] = row
        if row["status"] == "ok":
            cache.put(keys[p], row)
    return ref, {str(p): r for p, r in rows.items()}, False
