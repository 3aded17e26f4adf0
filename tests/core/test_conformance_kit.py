"""The conformance kit's checks can fail.

Each test registers a probe backend broken in one way and calls the kit check
that should catch it, expecting that check to fail with a message naming the
fault. ``TestProbeConformance`` runs the whole kit against the same probe
without faults, so each failure comes from the fault and not from the probe.

The probe's handlers live in a module written to a temporary directory on
``sys.path`` (so a worker child process can import it too); backends are
registered in-process on a fresh plugin manager.
"""

from __future__ import annotations

import importlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from edgesmith import Artifact, BackendInfo, Operation, childproc, hookimpl
from edgesmith.errors import BackendError, UserError
from edgesmith.manifest import TMP_MARK
from edgesmith.options import Option
from edgesmith.plugins import BackendManager, reset_manager
from edgesmith.testing import conformance
from edgesmith.testing.conformance import BackendConformance

PROBE = "edgesmith_kitprobe"

PROBE_SOURCE = '''
"""Handlers of the kit's probe backend (tests/core/test_conformance_kit.py)."""

import shutil
import time
from pathlib import Path

from edgesmith import Artifact, worker


def copy_quantize(source, spec, options, output, ctx):
    """A correct handler: copies the checkpoint, one progress report per file."""
    files = sorted(f for f in source.path.iterdir() if f.is_file() and f.name != "edgesmith.json")
    for n, f in enumerate(files):
        ctx.progress(f"copying {f.name}", n, len(files))
        shutil.copy2(f, output / f.name)
    return Artifact(output, "hf")


def steps(payload):
    """Runs in a worker: one step at a time, a marker file and a report per step."""
    marks = Path(payload["marks"])
    for i in range(payload["steps"]):
        (marks / f"step-{i}").write_text("")
        worker.progress(f"step {i}")
        time.sleep(payload["step_s"])
    (marks / "done").write_text("")
    return {"steps": payload["steps"]}


def worker_quantize(source, spec, options, output, ctx):
    """A correct handler whose vendor work runs in a child (like llama.cpp's converter)."""
    ctx.progress("starting the worker", None, None)
    answer = worker.run(f"{__name__}:steps",
                        {"marks": options["marks"], "steps": options["steps"], "step_s": 0.1},
                        on_progress=lambda message: ctx.progress(message, None, None))
    answer.unwrap("the probe worker")
    return copy_quantize(source, spec, options, output, ctx)
'''


# -- the probe backend ------------------------------------------------------------


def _copy(source: Artifact, output: Path, ctx: Any) -> Artifact:
    return importlib.import_module(PROBE).copy_quantize(source, None, {}, output, ctx)


def _load(artifact: Artifact, options: Any, ctx: Any) -> Any:
    from edgesmith_ref.runner import NumpyRunner  # the reference backend's runner (tests/core/refbackend)

    return NumpyRunner(Path(artifact.path))


def quantize_op(handler: Any = f"{PROBE}:copy_quantize", **kw: Any) -> Operation:
    return Operation("quantize", "hf", handler, devices=["cpu"], **kw)


LOAD = Operation("load", "hf", _load, devices=["cpu"])


class Probe:
    """A backend object for pluggy: ``edgesmith_backend`` returns the given info."""

    def __init__(self, info: BackendInfo) -> None:
        self.info = info

    @hookimpl
    def edgesmith_backend(self) -> BackendInfo:
        return self.info


def probe_info(*operations: Operation, name: str = "probe", **kw: Any) -> BackendInfo:
    ops = operations or (quantize_op(), LOAD)
    return BackendInfo(name=name, version="0.1", summary="the kit's probe", operations=ops,
                       libraries=["numpy"], **kw)


@pytest.fixture(scope="module")
def probe_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    site = tmp_path_factory.mktemp("kit-probe-site")
    (site / f"{PROBE}.py").write_text(PROBE_SOURCE)
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    yield site
    sys.path.remove(str(site))
    sys.modules.pop(PROBE, None)


@pytest.fixture
def install(probe_site: Path) -> Iterator[Callable[..., Any]]:
    """``install(info, module=PROBE)``: make ``info`` the only registered backend."""

    def add(info: BackendInfo, module: str = PROBE) -> Any:
        manager = BackendManager()
        rec = manager.add_backend(Probe(info), info.name, module=module)
        reset_manager(manager)
        return rec

    yield add
    reset_manager()


class ProbeKit(BackendConformance):
    backend = "probe"
    operation = "quantize"
    op_kwargs = {"bits": 8}
    child_exit_s = 0.5


class TestProbeConformance(ProbeKit):
    """The control: the kit passes on the probe without faults."""

    @pytest.fixture(autouse=True)
    def _installed(self, install):
        install(probe_info())

    @pytest.fixture(scope="class")
    @classmethod
    def source(cls, tiny_model):
        return tiny_model("llama")

    @pytest.fixture(scope="class")
    @classmethod
    def runnable(cls, tiny_model):
        return tiny_model("qwen2")


@pytest.fixture
def source(tiny_model) -> Path:
    return tiny_model("llama")


@pytest.fixture
def runnable(tiny_model) -> Path:
    return tiny_model("qwen2")


def fails(check: Callable[..., Any], *args: Any, match: str) -> AssertionError:
    """Run a kit check; it must fail with a message matching ``match``."""
    with pytest.raises(AssertionError, match=match) as info:
        check(*args)
    return info.value


# -- registered and usable, capabilities, light import ---------------------------------


def test_unavailable_backend_fails(install):
    install(probe_info(check=lambda: "the probe's vendor library is missing; pip install it"))
    fails(ProbeKit().test_registered_and_usable, match="probe is unavailable: the probe's vendor library")


def test_unregistered_backend_fails(install):
    install(probe_info(name="other"))
    fails(ProbeKit().test_registered_and_usable, match="'probe' is not registered")


@pytest.mark.parametrize(("operation", "match"), [
    (quantize_op(options=[Option("level", "int", "")]), "option level has no help text"),
    (quantize_op(f"{PROBE}:no_such_handler"), r"handler 'edgesmith_kitprobe:no_such_handler' cannot be imported"),
    (quantize_op("edgesmith_kitprobe_gone:quantize"), "cannot be imported .*ModuleNotFoundError"),
    (quantize_op(lambda source, output: None), "takes 2 arguments, not 5"),
    (quantize_op(options=[Option("level", "int", "how hard", default=9, max=8)]),
     "default 9 of level is not valid"),
], ids=["option-without-help", "missing-handler", "missing-module", "handler-signature", "bad-default"])
def test_malformed_operation_fails(install, operation, match):
    install(probe_info(operation, LOAD))
    fails(ProbeKit().test_capabilities_are_well_formed, match=match)


def test_operations_sharing_a_label_fail(install):
    install(probe_info(quantize_op(), quantize_op(), LOAD))
    fails(ProbeKit().test_capabilities_are_well_formed, match="two operations share a label")


def test_undeclared_main_operation_fails(install):
    install(probe_info(LOAD))
    fails(ProbeKit().test_capabilities_are_well_formed, match="probe does not declare quantize")


def test_heavy_plugin_import_fails(install, probe_site, tmp_path):
    # A stand-in for a vendor stack, importable only while this test runs.
    heavy = tmp_path / "heavy-site"
    (heavy / "jax").mkdir(parents=True)
    (heavy / "jax" / "__init__.py").write_text("")
    (heavy / "edgesmith_kitprobe_heavy.py").write_text("import jax  # a plugin module importing its stack\n")
    sys.path.insert(0, str(heavy))
    try:
        install(probe_info(), module="edgesmith_kitprobe_heavy")
        fails(ProbeKit().test_plugin_import_is_light, match="pulled in jax")
        install(probe_info(), module="edgesmith_kitprobe_heavy_gone")
        fails(ProbeKit().test_plugin_import_is_light, match="importing edgesmith_kitprobe_heavy_gone failed")
    finally:
        sys.path.remove(str(heavy))
        importlib.invalidate_caches()


# -- the manifest check: format, protocol, nothing outside the output ---------------------


def _writes_gguf(source, spec, options, output, ctx):
    ctx.progress("writing", None, None)
    (output / "config.json").write_text("{}")
    (output / "model.gguf").write_bytes(b"GGUF" + bytes(60))
    return Artifact(output, "hf")


def _declares_onnx(source, spec, options, output, ctx):
    _copy(source, output, ctx)
    return Artifact(output, "onnx", "model.onnx")


def _returns_path(source, spec, options, output, ctx):
    _copy(source, output, ctx)
    return str(output)


def _missing_entry(source, spec, options, output, ctx):
    _copy(source, output, ctx)
    return Artifact(output, "hf", entry="model.bin")


def _stray_sibling(source, spec, options, output, ctx):
    (output.parent / "probe-cache.bin").write_bytes(b"x")
    return _copy(source, output, ctx)


def _stray_cwd(source, spec, options, output, ctx):
    Path("probe.log").write_text("written by relative path")
    return _copy(source, output, ctx)


def _writes_source(source, spec, options, output, ctx):
    (source.path / "probe.cache").write_text("")
    return _copy(source, output, ctx)


def _scratch(tag: str = "probe") -> Path:
    path = Path(tempfile.gettempdir()) / f"edgesmith-{tag}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    return path


def _leaves_scratch(source, spec, options, output, ctx):
    (_scratch() / "work.bin").write_bytes(b"x")
    return _copy(source, output, ctx)


@pytest.mark.parametrize(("handler", "match"), [
    (_writes_gguf, "probe says it wrote hf but its files are gguf"),
    (_declares_onnx, r"declared quantize hf -> hf but wrote 'onnx'"),
    (_returns_path, "broke the output protocol"),
    (_missing_entry, "the entry model.bin is not a file"),
    (_stray_sibling, r"left files beside its output: \['probe-cache.bin'\]"),
    (_stray_cwd, r"wrote into the working directory: \['probe.log'\]"),
    (_writes_source, "changed its source"),
    (_leaves_scratch, "left scratch directories"),
], ids=["wrong-files", "wrong-format", "not-an-artifact", "missing-entry", "file-beside-output",
        "file-in-cwd", "writes-into-source", "leaves-scratch"])
def test_broken_output_fails_manifest_check(install, tiny_model, tmp_path, handler, match):
    source = shutil.copytree(tiny_model("llama"), tmp_path / "source")  # its own: one case writes into it
    before = set(conformance.scratch_dirs([os.getpid()]))
    install(probe_info(quantize_op(handler), LOAD))
    try:
        fails(ProbeKit().test_operation_writes_manifest, source, tmp_path / "kit", match=match)
    finally:
        for d in set(conformance.scratch_dirs([os.getpid()])) - before:
            shutil.rmtree(d)


def _spawn_sleeper() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])


@pytest.fixture
def sleepers() -> Iterator[list[subprocess.Popen]]:
    """Child processes a broken handler leaves running; killed after the test."""
    procs: list[subprocess.Popen] = []
    yield procs
    for p in procs:
        p.kill()
        p.wait()


def test_child_left_after_success_fails(install, source, tmp_path, sleepers):
    def spawns(source, spec, options, output, ctx):
        sleepers.append(_spawn_sleeper())  # a helper process nobody stops
        return _copy(source, output, ctx)

    install(probe_info(quantize_op(spawns), LOAD))
    fails(ProbeKit().test_operation_writes_manifest, source, tmp_path,
          match=r"left child processes running: pid \d+ .*time.sleep\(120\)")


# -- the interrupt check ---------------------------------------------------------------


def _silent(source, spec, options, output, ctx):
    for f in source.path.iterdir():
        if f.is_file():
            (output / f.name).write_bytes(f.read_bytes())
    return Artifact(output, "hf")


def _reports_once_first(source, spec, options, output, ctx):
    ctx.progress("starting", None, None)  # the only report, before any work
    return _silent(source, spec, options, output, ctx)


def _swallows(source, spec, options, output, ctx):
    try:
        return _copy(source, output, ctx)
    except KeyboardInterrupt:
        return _silent(source, spec, options, output, ctx)


def _converts(source, spec, options, output, ctx):
    try:
        return _copy(source, output, ctx)
    except BaseException as exc:  # noqa: BLE001 - the fault under test
        raise BackendError(f"probe stopped: {type(exc).__name__}") from None


def _writes_final_path(source, spec, options, output, ctx):
    final = output.parent / output.name.split(TMP_MARK)[0].lstrip(".")
    final.mkdir()
    (final / "partial.bin").write_bytes(b"x")  # straight into -o, bypassing the staging
    return _copy(source, output, ctx)


def _scratch_not_removed(source, spec, options, output, ctx):
    work = _scratch()
    (work / "partial.bin").write_bytes(b"x")
    result = _copy(source, output, ctx)  # an interrupt skips the clean-up below
    shutil.rmtree(work)
    return result


@pytest.mark.parametrize(("handler", "match"), [
    (_silent, "probe never reported progress"),
    (_reports_once_first, r"finished after 1 progress report\(s\) .* before the interrupt point \(report 2\)"),
    (_swallows, "swallowed the KeyboardInterrupt"),
    (_converts, "turned the KeyboardInterrupt into BackendError: probe stopped"),
    (_writes_final_path, "the interrupted job left .*out"),
    (_scratch_not_removed, "left scratch directories"),
], ids=["ignores-progress", "reports-only-before-work", "swallows-interrupt", "converts-interrupt",
        "writes-final-path", "leaves-scratch"])
def test_bad_interrupt_handling_fails(install, source, tmp_path, handler, match):
    before = set(conformance.scratch_dirs([os.getpid()]))
    install(probe_info(quantize_op(handler), LOAD))
    try:
        fails(ProbeKit().test_interrupted_operation_leaves_nothing, source, tmp_path, match=match)
    finally:
        for d in set(conformance.scratch_dirs([os.getpid()])) - before:
            shutil.rmtree(d)


def test_interrupt_after_a_while(install, source, tmp_path):
    """``interrupt_after_s`` holds the interrupt back: a probe reporting per file
    in a few milliseconds finishes first, and the check says so."""

    class Patient(ProbeKit):
        interrupt_after_s = 30.0

    install(probe_info())
    fails(Patient().test_interrupted_operation_leaves_nothing, source, tmp_path,
          match=r"before the interrupt point \(report 2, 30 s in\)")


def test_child_left_after_interrupt_fails(install, source, tmp_path, sleepers):
    def spawns(source, spec, options, output, ctx):
        sleepers.append(_spawn_sleeper())  # started without edgesmith.childproc, never stopped
        return _copy(source, output, ctx)

    install(probe_info(quantize_op(spawns), LOAD))
    fails(ProbeKit().test_interrupted_operation_leaves_nothing, source, tmp_path,
          match=r"left child processes running: pid \d+ .*time.sleep\(120\)")


def test_child_process_expected_but_none_running_fails(install, source, tmp_path):
    class Worker(ProbeKit):
        child_process = True

    install(probe_info())  # copies in-process: no child at the interrupt
    fails(Worker().test_interrupted_operation_leaves_nothing, source, tmp_path,
          match="no child process was running at the interrupt")


# -- the kill path of out-of-process workers ---------------------------------------------

WORKER_OPTIONS = [Option("marks", "str", "directory where the probe worker notes its steps"),
                  Option("steps", "int", "steps the probe worker takes", default=50, min=1)]


class WorkerKit(ProbeKit):
    child_process = True
    interrupt_at = 3  # "starting the worker", "step 0", then "step 1": the child is mid-work


def _worker_kit(marks: Path) -> WorkerKit:
    kit = WorkerKit()
    kit.op_kwargs = {**ProbeKit.op_kwargs, "options": {"marks": str(marks)}}
    return kit


def _steps(marks: Path) -> list[str]:
    return sorted(p.name for p in marks.iterdir())


def test_interrupt_kills_the_worker(install, source, tmp_path):
    """The check passes on a backend whose work runs in an edgesmith.worker child:
    the child is interrupted mid-work, killed, and leaves nothing."""
    install(probe_info(quantize_op(f"{PROBE}:worker_quantize", options=WORKER_OPTIONS), LOAD))
    marks = tmp_path / "marks"
    marks.mkdir()
    before = conformance.descendants()
    _worker_kit(marks).test_interrupted_operation_leaves_nothing(source, tmp_path / "kit")
    steps = _steps(marks)
    assert "step-1" in steps and "done" not in steps, steps  # stopped mid-work
    time.sleep(0.5)
    assert _steps(marks) == steps, "the worker went on after the interrupt"
    assert set(conformance.descendants()) <= set(before)


def test_worker_left_running_fails(install, source, tmp_path, monkeypatch):
    """With the kill path broken (childproc.kill does nothing), the check catches
    the worker still running after the interrupt."""
    install(probe_info(quantize_op(f"{PROBE}:worker_quantize", options=WORKER_OPTIONS), LOAD))
    marks = tmp_path / "marks"
    marks.mkdir()
    before = conformance.descendants()
    monkeypatch.setattr(childproc, "kill", lambda proc: None)
    try:
        fails(_worker_kit(marks).test_interrupted_operation_leaves_nothing, source, tmp_path / "kit",
              match=r"left child processes running: pid \d+ .* -m edgesmith.worker")
    finally:
        for pid in set(conformance.descendants()) - set(before):
            os.kill(pid, signal.SIGKILL)
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass


def test_worker_probe_passes_the_manifest_check(install, source, tmp_path):
    install(probe_info(quantize_op(f"{PROBE}:worker_quantize", options=WORKER_OPTIONS), LOAD))
    marks = tmp_path / "marks"
    marks.mkdir()
    kit = _worker_kit(marks)
    kit.op_kwargs = {**kit.op_kwargs, "options": {"marks": str(marks), "steps": 2}}
    kit.test_operation_writes_manifest(source, tmp_path / "kit")
    assert "done" in _steps(marks)


# -- bad inputs ----------------------------------------------------------------------


def _picky(source, spec, options, output, ctx):
    fault = options["fault"]
    if fault == "multiline":
        raise UserError("group size 48 does not divide 256\nchoose 32 or 64")
    if fault == "valueerror":
        raise ValueError("group size 48 does not divide 256")
    if fault == "leaves-output":
        final = output.parent / output.name.split(TMP_MARK)[0].lstrip(".")
        final.mkdir()
        raise UserError("group size 48 does not divide 256")
    return _copy(source, output, ctx)


FAULT = Option("fault", "choice", "which fault the probe shows",
               choices=["none", "multiline", "valueerror", "leaves-output"], default="none")


@pytest.mark.parametrize(("fault", "match"), [
    ("multiline", "bad group: error is not one line"),
    ("valueerror", "bad group: raised ValueError: group size 48 does not divide 256, not a UserError"),
    ("none", "bad group: was accepted"),
    ("leaves-output", "bad group: left output behind"),
])
def test_bad_input_errors_fail(install, source, tmp_path, fault, match):
    class Picky(ProbeKit):
        def bad_inputs(self, tmp_path):
            from edgesmith import api

            return [("bad group", lambda out: api.quantize(source, out, bits=8, backend="probe",
                                                            options={"fault": fault}))]

    install(probe_info(quantize_op(_picky, options=[FAULT]), LOAD))
    fails(Picky().test_bad_inputs_give_one_line_errors, tmp_path, match=match)


# -- the run checks ------------------------------------------------------------------


def _runner(**overrides: Callable[..., Any]) -> Callable[..., Any]:
    def load(artifact, options, ctx):
        from edgesmith_ref.runner import NumpyRunner

        cls = type("BrokenRunner", (NumpyRunner,), overrides)
        return cls(Path(artifact.path))

    return load


def test_unnormalised_logprobs_fail(install, runnable):
    install(probe_info(quantize_op(), Operation("load", "hf", _runner(
        logprobs=lambda self, ids: self._logits(list(ids))))))  # raw logits, not log-softmax
    fails(ProbeKit().test_scores_are_log_probabilities, runnable, match="rows must be log-softmax")


def test_nondeterministic_greedy_fails(install, runnable):
    import numpy as np

    rng = np.random.default_rng()

    def stream_tokens(self, prompt_ids, request):
        for _ in range(request.max_tokens):
            yield int(rng.integers(3, 300))  # ignores temperature 0

    install(probe_info(quantize_op(), Operation("load", "hf", _runner(stream_tokens=stream_tokens))))
    fails(ProbeKit().test_run_returns_text_and_timings, runnable, match="greedy decoding must be deterministic")
