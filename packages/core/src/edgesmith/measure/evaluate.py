"""``edgesmith eval``: quality of each artifact against a reference model.

The reference is scored first (its worker also stores, per window, the
distributions the others are compared with), then each artifact in its own
worker on the very same token ids and windows.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..scratch import scratch_dir
from ..util import physical_cores
from . import definitions
from . import gates as gates_mod
from .common import MeasureError, Progress, backend_versions, check_paths, sizes
from .isolation import run_worker

DEFAULT_WINDOW = 512
DEFAULT_TOP_K = 256


def evaluate(
    artifacts: list[str | Path],
    reference: str | Path,
    *,
    text: str | Path | None = None,
    window: int = DEFAULT_WINDOW,
    max_windows: int | None = None,
    top_k: int = DEFAULT_TOP_K,
    smoke_tokens: int | None = None,
    gates: gates_mod.Gates | None = None,
    threads: int | None = None,
    backend: str | None = None,
    options: dict[str, str] | None = None,
    timeout: float | None = None,
    speeds: dict[str, float] | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Evaluate ``artifacts`` against ``reference``; one record per artifact with its verdict.

    ``speeds`` maps artifact paths to decode tokens/s from ``bench``; where it
    holds both an artifact and the reference, the speed gate uses those careful
    figures instead of the rough ones from the smoke-test generations.
    """
    from .text import load_text

    if window < 2:
        raise UserError(f"--window must be at least 2 tokens, got {window}")
    if top_k < 1:
        raise UserError(f"--kl-top-k must be at least 1, got {top_k}")
    if max_windows is not None and max_windows < 1:
        raise UserError(f"--windows must be at least 1, got {max_windows}")
    gates = gates or gates_mod.Gates()
    paths = check_paths(artifacts)
    ref_path = check_paths([reference])[0]
    body, text_name = load_text(text)
    threads = threads or physical_cores()
    say = progress or (lambda message: None)
    common = {"backend": backend, "options": options or {}, "threads": threads,
              "text": str(text) if text else None}
    if smoke_tokens:
        common["smoke_tokens"] = smoke_tokens
    with scratch_dir("eval") as work:
        say(f"reference {ref_path}: starting")
        answer = run_worker({"kind": "reference", "artifact": str(ref_path), "workdir": str(work),
                             "window": window, "max_windows": max_windows, "top_k": top_k, **common},
                            lambda m: say(f"reference {ref_path}: {m}"), timeout)
        if not answer["ok"]:
            raise MeasureError(f"the reference {ref_path} could not be evaluated: {answer['error']}")
        ref = {"path": str(ref_path), "name": ref_path.name, **sizes(ref_path), **answer["result"]}
        known = {str(Path(p).resolve()): v for p, v in (speeds or {}).items() if v}
        ref["bench_decode_tps"] = known.get(str(ref_path.resolve()))
        ref["backend"] = backend_versions(ref["backend"])
        rows = []
        for n, path in enumerate(paths):
            label = f"[{n + 1}/{len(paths)}] {path}"
            say(f"{label}: starting")
            answer = run_worker({"kind": "compare", "artifact": str(path), "workdir": str(work), **common},
                                lambda m, label=label: say(f"{label}: {m}"), timeout)
            rows.append(_row(path, answer, ref, gates, known.get(str(path.resolve()))))
    verdict = "error" if any(r["status"] == "error" for r in rows) else (
        "fail" if any(r["verdict"] == "fail" for r in rows) else "pass")
    return {
        "schema": "edgesmith.eval/1",
        "created": definitions.now(),
        "environment": definitions.environment(),
        "settings": {"text": text_name, "text_sha256": hashlib.sha256(body.encode()).hexdigest(),
                     "window": ref["window"], "windows": ref["windows"],
                     "scored_tokens": ref["scored_tokens"], "kl_top_k": top_k,
                     "threads": threads, "backend": backend},
        "definitions": definitions.EVAL,
        "gates": gates.to_dict(),
        "reference": ref,
        "artifacts": rows,
        "verdict": verdict,
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _row(path: Path, answer: dict[str, Any], ref: dict[str, Any], gates: gates_mod.Gates,
         bench_tps: float | None) -> dict[str, Any]:
    row: dict[str, Any] = {"path": str(path), "name": path.name, **sizes(path)}
    if not answer["ok"]:
        return {**row, "status": "error", "error": answer["error"], "error_kind": answer["kind"],
                "verdict": "error", "log_tail": answer.get("log", "")[-1500:]}
    r = answer["result"]
    if bench_tps and ref.get("bench_decode_tps"):
        speed = {"decode_tps": bench_tps, "speed_source": "bench",
                 "speedup": bench_tps / ref["bench_decode_tps"]}
    else:
        speed = {"decode_tps": r.get("decode_tps"), "speed_source": "smoke test",
                 "speedup": _ratio(r.get("decode_tps"), ref.get("decode_tps"))}
    figures = {
        "perplexity": r["perplexity"],
        "ppl_ratio": _ratio(r["perplexity"], ref["perplexity"]),
        "kl": r.get("kl"),
        "top1": r.get("top1"),
        "ref_tail_mass": ref.get("ref_tail_mass"),
        "size_ratio": _ratio(row["size_bytes"], ref["size_bytes"]),
        **speed,
        "scored_tokens": r["scored_tokens"],
        "vocab": r["vocab"],
    }
    checks = gates_mod.check(gates, {**figures, "smoke": r["smoke"]})
    return {**row, "status": "ok", "backend": backend_versions(r["backend"]), **figures,
            "smoke": r["smoke"], "gates": checks, "verdict": gates_mod.verdict(checks)}


def certificate(result: dict[str, Any]) -> dict[str, Any]:
    """The validation record ``--certify`` writes: what was checked, on which
    exact bytes (content hashes), with which software, and the verdict."""
    from ..util import content_hash

    def entry(row: dict[str, Any]) -> dict[str, Any]:
        path = Path(row["path"])
        return {"content_hash": content_hash(path) if path.exists() else None, **row}

    return {
        "schema": "edgesmith.certificate/1",
        "issued": definitions.now(),
        "environment": result["environment"],
        "settings": result["settings"],
        "definitions": result["definitions"],
        "gates": result["gates"],
        "reference": entry(result["reference"]),
        "artifacts": [entry(r) for r in result["artifacts"]],
        "verdict": result["verdict"],
    }


def exit_code(result: dict[str, Any]) -> int:
    if result["verdict"] == "error":
        return gates_mod.EXIT_MEASURE_FAILED
    return gates_mod.EXIT_GATE_FAILED if result["verdict"] == "fail" else 0
