"""Build and run Olive workflows; keep their config and log beside the result.

Every operation is one Olive workflow run through Olive's Python API
(``olive.workflows.run``) on the local system. The config is also written to
``olive_config.json`` in the output, with relative output/cache folders, so
``olive run --config olive_config.json`` repeats the job outside edgesmith.
Olive's log (its logger, the builder's prints and progress bars) goes to
``olive.log`` in the output instead of the terminal.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import traceback
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from edgesmith import offline
from edgesmith.errors import BackendError
from edgesmith.manifest import TMP_MARK
from edgesmith.patches import applied
from edgesmith.types import Context

from . import patches
from .offline import OLIVE_ENV
from .options import PROVIDERS

CONFIG_NAME = "olive_config.json"
LOG_NAME = "olive.log"


def reproduce(*extra: str) -> str:
    """How to repeat a job with Olive's CLI.

    Not inside the output: onnx resolves external-data file names against the
    working directory, so a run there would read or move this folder's
    model.onnx / model.onnx.data.
    """
    files = " ".join((CONFIG_NAME, *extra))
    return f"copy {files} into an empty folder and run there: olive run --config {CONFIG_NAME}"
#: Scratch folder inside the output; removed once the model is moved out of it.
WORK_DIR = ".olive-work"



def build_config(
    input_model: Mapping[str, Any],
    passes: Mapping[str, Mapping[str, Any]],
    provider: str,
    output_dir: str,
    cache_dir: str,
) -> dict[str, Any]:
    """An Olive run config: one local system, the passes in order, no search, no evaluation."""
    device, ep = PROVIDERS[provider]
    return {
        "input_model": dict(input_model),
        "systems": {
            "local_system": {
                "type": "LocalSystem",
                "accelerators": [{"device": device, "execution_providers": [ep]}],
            }
        },
        "passes": {name: dict(p) for name, p in passes.items()},
        "host": "local_system",
        "target": "local_system",
        "evaluate_input_model": False,
        "log_severity_level": 1,
        "cache_dir": cache_dir,
        "output_dir": output_dir,
    }


class _PassTracker(logging.Handler):
    """Remembers which pass Olive started last and why a flow was pruned."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.current: str | None = None
        self.problems: list[str] = []
        #: One-line form of the first exception Olive logged (it often swallows it).
        self.error: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = record.getMessage()
        except Exception:  # a malformed record must not break the job
            return
        if record.exc_info and record.exc_info[1] is not None and self.error is None:
            self.error = _one_line(record.exc_info[1])
        m = re.match(r"Running pass (\S+)", msg)
        if m:
            self.current = m.group(1)
        elif record.levelno >= logging.WARNING:
            self.problems.append(msg.splitlines()[0] if msg else "")


def _final_name(output: Path) -> str:
    """The name the core will give ``output`` (``.NAME.edgesmith-tmp-xxxx`` -> ``NAME``)."""
    name = output.name
    if TMP_MARK in name:
        name = name.split(TMP_MARK)[0].lstrip(".")
    return name


def keep_failed_log(output: Path) -> Path | None:
    """Copy the log next to the final output: the core deletes ``output`` on failure."""
    log = output / LOG_NAME
    if not log.is_file():
        return None
    kept = output.parent / f"{_final_name(output)}.olive-failed.log"
    shutil.copyfile(log, kept)
    return kept


@contextlib.contextmanager
def _captured(log_path: Path, tracker: _PassTracker) -> Iterator[None]:
    """Send Olive's logger, stdout and stderr to ``log_path`` for the block."""
    olive_logger = logging.getLogger("olive")
    ort_logger = logging.getLogger("onnxruntime")
    saved = {lg: (list(lg.handlers), lg.propagate, lg.level) for lg in (olive_logger, ort_logger)}
    with open(log_path, "a", encoding="utf-8") as stream:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter("[%(asctime)s] [%(levelname)s] [%(name)s] %(message)s"))
        olive_logger.handlers = [handler, tracker]
        olive_logger.propagate = False
        try:
            with contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream):
                yield
        finally:
            # Olive sets both loggers' levels and adds a stdout handler to the onnxruntime
            # logger on every run (a file handler to the olive one with log_to_file).
            for lg, (handlers, propagate, level) in saved.items():
                for h in lg.handlers:
                    if h not in handlers and h is not handler and h is not tracker:
                        h.close()
                lg.handlers, lg.propagate = handlers, propagate
                lg.setLevel(level)
            _drop_handlers_on(stream)
            stream.flush()


@contextlib.contextmanager
def _working_dir(path: Path) -> Iterator[None]:
    """Run the block in ``path`` (an empty scratch folder).

    onnx checks and writes external-data files by name relative to the
    working directory; ONNX Runtime's quantizers, called by Olive, save
    ``model.onnx`` + ``model.onnx.data`` that way and fail (or pick up the
    wrong file) when the user's working directory already holds a
    ``model.onnx.data``. Every path in the config is absolute.
    """
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def _drop_handlers_on(stream: object) -> None:
    """Remove logging handlers that libraries attached to the captured stream.

    Some libraries call ``logging.basicConfig`` or add a StreamHandler on
    ``sys.stdout`` while it is redirected; left in place they would write to
    a closed file after the job.
    """
    loggers = [logging.getLogger()] + [
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    for lg in loggers:
        for h in list(lg.handlers):
            if getattr(h, "stream", None) is stream:
                lg.removeHandler(h)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    if text:
        return f"{type(exc).__name__}: {text[-1]}"
    # A bare assertion says nothing by itself: name the line that raised it.
    frames = traceback.extract_tb(exc.__traceback__)
    if frames:
        last = frames[-1]
        return f"{type(exc).__name__} at {Path(last.filename).name}:{last.lineno} ({(last.line or '').strip()})"
    return type(exc).__name__


def run_workflow(
    input_model: Mapping[str, Any],
    passes: Mapping[str, Mapping[str, Any]],
    provider: str,
    output: Path,
    ctx: Context,
    *,
    what: str,
    portable_passes: Mapping[str, Mapping[str, Any]] | None = None,
) -> Path:
    """Run the workflow; return the folder holding Olive's output model.

    Writes ``olive_config.json`` and ``olive.log`` into ``output``;
    ``portable_passes`` replace ``passes`` in that file where they name files
    by absolute path inside ``output`` (a calibration script). On failure
    raises BackendError naming the pass that failed and the kept log file.
    """
    work = output.resolve() / WORK_DIR
    work.mkdir(parents=True, exist_ok=True)
    olive_out = work / "output"
    config = build_config(input_model, passes, provider, str(olive_out), str(work / "cache"))
    portable = build_config(input_model, portable_passes or passes, provider, "olive-output", ".olive-cache")
    (output / CONFIG_NAME).write_text(json.dumps(portable, indent=2) + "\n")
    log_path = output / LOG_NAME
    ctx.progress(f"olive: {what}", None, None)

    tracker = _PassTracker()
    # Offline for the run, with the vendor patches the passes need (see .patches);
    # the working directory, the loggers and the environment are put back afterwards.
    # Olive's engine points OLIVE_CACHE_DIR at the run's cache, here a scratch
    # folder that is deleted once the job is done.
    with offline.applied(extra=OLIVE_ENV), offline.env_restored("OLIVE_CACHE_DIR"):
        try:
            with applied(patches.for_passes(passes)), _captured(log_path, tracker), _working_dir(work):
                from olive.workflows import run as olive_run

                olive_run(config)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:
            with open(log_path, "a", encoding="utf-8") as f:
                traceback.print_exception(exc, file=f)
            raise _failure(output, tracker, _one_line(exc)) from None
    model = olive_out / "model.onnx"
    if not model.is_file():
        found = sorted(olive_out.rglob("model.onnx")) if olive_out.is_dir() else []
        if found:
            return found[0].parent
        reason = tracker.error or next((p for p in reversed(tracker.problems) if p), "it produced no model")
        raise _failure(output, tracker, reason)
    ctx.progress(f"olive: {what}", 1, 1)
    return olive_out


def _failure(output: Path, tracker: _PassTracker, reason: str) -> BackendError:
    kept = keep_failed_log(output)
    where = f"; full log: {kept}" if kept else ""
    step = f"pass {tracker.current}" if tracker.current else "workflow setup"
    return BackendError(f"Olive {step} failed: {reason}{where}")


def finish(output: Path) -> None:
    """Remove Olive's scratch folder once the result has been moved out of it."""
    shutil.rmtree(output / WORK_DIR, ignore_errors=True)


def bundle_details(arch: str | None, provider: str, passes: Mapping[str, Any], repairs: Any,
                   reproduce: str) -> dict[str, Any]:
    """The manifest facts every workflow that writes a GenAI bundle records."""
    return {"bundle": "onnxruntime-genai", "architecture": arch, "provider": provider,
            "execution_provider": PROVIDERS[provider][1],
            "olive_passes": [p["type"] for p in passes.values()],
            "olive_config": CONFIG_NAME, "log": LOG_NAME, "repairs": repairs, "reproduce": reproduce}
