"""The backend conformance kit: shared checks every backend's tests inherit.

Subclass :class:`BackendConformance` in a test module, set ``backend`` and the
main operation, and provide the ``source`` and ``runnable`` fixtures::

    class TestLlamacppConformance(BackendConformance):
        backend = "llamacpp"
        operation = "quantize"
        op_kwargs = {"scheme": "Q8_0"}

        @pytest.fixture(scope="class")
        @classmethod
        def source(cls, tiny_model, tmp_path_factory): ...    # a model it takes

        @pytest.fixture(scope="class")
        @classmethod
        def runnable(cls, ...): ...                            # a model it runs

        def bad_inputs(self, tmp_path): return [("label", lambda out: ...), ...]

Every check runs the real backend; nothing here mocks a vendor library.

The interrupt check raises KeyboardInterrupt from the progress callback once
the operation is under way (report number ``interrupt_at``, and no earlier
than ``interrupt_after_s`` seconds in), then requires that nothing is left:
no output, no staging directory, no lock, no stray file, no scratch directory
of the test process, and no child process (``child_process = True`` for
backends that run vendor code in a worker, so the kill path is exercised).

That each check can fail, and says why, is shown in
``tests/core/test_conformance_kit.py``: it runs these checks against
deliberately broken backends.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np
import pytest

import edgesmith
from edgesmith import api
from edgesmith.errors import BackendError, OutputExistsError, UserError
from edgesmith.formats import detect
from edgesmith.manifest import MANIFEST_NAME, TMP_MARK
from edgesmith.plugins import get_manager
from edgesmith.types import DEVICES, OPERATIONS, RunRequest
from edgesmith.util import content_hash

#: Modules that listing or importing a backend's plugin must never pull in.
HEAVY_MODULES = ("torch", "openvino", "mlx", "onnxruntime", "llama_cpp", "transformers",
                 "olive", "nncf", "onnxruntime_genai", "optimum", "tensorflow", "jax")

#: ``(declared, detected)`` formats that files alone do not tell apart: a QNN
#: artifact may be a QDQ ONNX graph, which only its manifest marks as qnn.
FILE_ALIKE = {("qnn", "onnx")}

REQUIRED_MANIFEST_KEYS = ("schema_version", "format", "backend", "libraries", "operation",
                          "parent", "size_bytes", "content_hash", "timings", "created")


def _leftovers(output: Path) -> list[Path]:
    return sorted(output.parent.glob(f".{output.name}{TMP_MARK}*"))


def _first_line(exc: BaseException) -> str:
    lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


# -- processes ------------------------------------------------------------------


class Proc(NamedTuple):
    """One process as seen in the process table."""

    pid: int
    ppid: int
    state: str
    #: Start time (clock ticks since boot on Linux): tells a pid reused by another process apart.
    start: str
    command: str


def process_table() -> dict[int, Proc]:
    """Every process this user can see (``/proc`` on Linux, ``ps`` elsewhere)."""
    table: dict[int, Proc] = {}
    if os.path.exists("/proc/self/stat"):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(os.path.join(entry.path, "stat"), encoding="utf-8", errors="replace") as f:
                    stat = f.read()
                with open(os.path.join(entry.path, "cmdline"), "rb") as f:
                    command = f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
            except OSError:  # it ended while we looked
                continue
            fields = stat.rsplit(")", 1)[-1].split()
            if len(fields) < 20:
                continue
            command = command or stat[stat.find("(") + 1:stat.rfind(")")]
            table[int(entry.name)] = Proc(int(entry.name), int(fields[1]), fields[0], fields[19], command)
        return table
    ps = subprocess.Popen(["ps", "-A", "-o", "pid=", "-o", "ppid=", "-o", "state=", "-o", "command="],
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    listing, _ = ps.communicate()
    for line in listing.splitlines():
        parts = line.split(None, 3)
        if len(parts) >= 3 and parts[0].isdigit() and parts[1].isdigit() and int(parts[0]) != ps.pid:
            pid = int(parts[0])
            table[pid] = Proc(pid, int(parts[1]), parts[2][:1], "", parts[3] if len(parts) > 3 else "")
    return table


def descendants(pid: int | None = None, table: Mapping[int, Proc] | None = None) -> dict[int, Proc]:
    """The children of ``pid`` (default: this process), their children, and so on."""
    root = os.getpid() if pid is None else pid
    table = process_table() if table is None else table
    kids: dict[int, list[int]] = {}
    for p in table.values():
        kids.setdefault(p.ppid, []).append(p.pid)
    found: dict[int, Proc] = {}
    todo = list(kids.get(root, []))
    while todo:
        p = todo.pop()
        if p in found or p == root:
            continue
        found[p] = table[p]
        todo.extend(kids.get(p, []))
    return found


def still_there(procs: Iterable[Proc], table: Mapping[int, Proc] | None = None) -> list[Proc]:
    """Those of ``procs`` that still exist (the same process, not a reused pid)."""
    table = process_table() if table is None else table
    return [p for p in procs if p.pid in table and table[p.pid].start == p.start]


def left_running(seen: Iterable[Proc], before: Mapping[int, Proc], wait_s: float) -> list[Proc]:
    """Processes left behind: of ``seen`` (children during the job), those still
    there, and any descendant of this process not in ``before``; killed children
    get ``wait_s`` seconds to disappear."""
    seen = list(seen)
    deadline = time.monotonic() + wait_s
    while True:
        table = process_table()
        left = {p.pid: p for p in still_there(seen, table)}
        left.update({pid: p for pid, p in descendants(table=table).items()
                     if pid not in before or before[pid].start != p.start})
        if not left or time.monotonic() > deadline:
            return sorted(left.values())
        time.sleep(0.05)


def _describe(procs: Iterable[Proc]) -> str:
    return "; ".join(f"pid {p.pid} [{p.state}] {p.command[:160]}" for p in procs)


# -- files ----------------------------------------------------------------------

_SCRATCH = re.compile(r"^edgesmith-[a-z0-9_.]+-(\d+)-[0-9a-f]{8}$")


def scratch_dirs(pids: Iterable[int]) -> list[Path]:
    """``edgesmith-TAG-PID-XXXXXXXX`` scratch directories of ``pids`` in the temp dir."""
    wanted = {str(p) for p in pids}
    root = Path(tempfile.gettempdir())
    try:
        names = os.listdir(root)
    except OSError:
        return []
    return sorted(root / n for n in names if (m := _SCRATCH.match(n)) and m.group(1) in wanted)


def _tree(path: Path) -> dict[str, tuple[int, int]]:
    """``relative path -> (size, mtime_ns)`` of every file under ``path`` (or of
    ``path``); a directory is recorded by its presence only."""
    if path.is_file():
        st = path.stat()
        return {".": (st.st_size, st.st_mtime_ns)}
    out = {}
    for f in sorted(path.rglob("*")):
        st = f.lstat()
        out[str(f.relative_to(path))] = (-1, 0) if f.is_dir() else (st.st_size, st.st_mtime_ns)
    return out


class Fence:
    """Watches what an operation touches outside its output.

    Entered around the operation, it makes an empty directory the working
    directory (a file written by relative path lands there) and notes the
    source's files, this process's scratch directories and child processes.
    :meth:`check` then asserts that ``workdir`` (the output's parent) holds
    only ``expected``, the working directory and the source are as they were,
    and no scratch directory or process of the job is left.
    """

    def __init__(self, source: Path, workdir: Path, cwd: Path, child_exit_s: float = 5.0) -> None:
        self.source, self.workdir, self.cwd = Path(source), Path(workdir), Path(cwd)
        self.child_exit_s = child_exit_s
        #: Child processes noticed during the job (the interrupt check adds those it saw).
        self.seen: dict[int, Proc] = {}

    def __enter__(self) -> Fence:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.cwd.mkdir(parents=True, exist_ok=True)
        self.source_files = _tree(self.source)
        self.before = descendants()
        self.scratch = set(scratch_dirs([os.getpid()]))
        self._old_cwd = os.getcwd()
        os.chdir(self.cwd)
        return self

    def __exit__(self, *exc: Any) -> None:
        os.chdir(self._old_cwd)

    def snapshot(self) -> dict[int, Proc]:
        """Note the job's child processes now; returns them."""
        now = {pid: p for pid, p in descendants().items() if pid not in self.before}
        self.seen.update(now)
        return now

    def check(self, backend: str, expected: Iterable[str] = ()) -> None:
        stray = sorted(set(os.listdir(self.workdir)) - set(expected))
        assert not stray, f"{backend} left files beside its output: {stray}"
        in_cwd = sorted(os.listdir(self.cwd))
        assert not in_cwd, f"{backend} wrote into the working directory: {in_cwd}"
        changed = self.source_files != _tree(self.source)
        assert not changed, f"{backend} changed its source {self.source} (an operation only reads it)"
        procs = left_running(self.seen.values(), self.before, self.child_exit_s)
        assert not procs, f"{backend} left child processes running: {_describe(procs)}"
        pids = [os.getpid(), *self.seen]
        scratch = sorted(set(scratch_dirs(pids)) - self.scratch)
        assert not scratch, f"{backend} left scratch directories: {[str(p) for p in scratch]}"


class BackendConformance:
    """Shared checks. Subclasses set the class attributes and fixtures below."""

    #: Entry-point name of the backend under test.
    backend: ClassVar[str] = ""
    #: Main operation checked for manifests and atomicity: convert, quantize or compile.
    operation: ClassVar[str] = "convert"
    #: Keyword arguments for the api call (``to=``, ``scheme=``, ``device=`` ...).
    op_kwargs: ClassVar[dict[str, Any]] = {}
    #: Tokens generated in the run checks.
    run_tokens: ClassVar[int] = 8
    #: Whether the backend scores token ids (``Runner.logprobs``).
    scores: ClassVar[bool] = True
    #: The progress report (counting from 1) on which the interrupt check raises
    #: KeyboardInterrupt. The first report usually comes before any vendor work;
    #: the default interrupts at the second, once the work is under way.
    interrupt_at: ClassVar[int] = 2
    #: ... and not before this many seconds into the operation: for an operation
    #: whose progress ticks while a worker process runs, interrupt mid-work.
    interrupt_after_s: ClassVar[float] = 0.0
    #: Whether the operation runs vendor code in a child process (through
    #: :mod:`edgesmith.worker`); the interrupt check then requires one to be
    #: running when it interrupts, and gone afterwards.
    child_process: ClassVar[bool] = False
    #: Seconds a killed child process may take to disappear.
    child_exit_s: ClassVar[float] = 5.0

    # -- what the subclass provides ---------------------------------------------
    # Fixtures ``source`` (a model the operation takes) and ``runnable`` (a model
    # the backend runs), typically ``@pytest.fixture(scope="class")`` over a
    # ``@classmethod``.

    @pytest.fixture
    def runnable(self) -> Path:
        # Overridden by backends that run models; the run checks skip otherwise.
        pytest.skip(f"{self.backend} provides no runnable model to check")

    def bad_inputs(self, tmp_path: Path) -> list[tuple[str, Callable[[Path], Any]]]:
        """``(label, call)`` pairs; ``call(output)`` must raise UserError and write nothing."""
        return []

    # -- helpers --------------------------------------------------------------

    def do_operation(self, source: Path, output: Path, **extra: Any) -> edgesmith.Artifact:
        kwargs = {**self.op_kwargs, **extra}
        kwargs.setdefault("backend", self.backend)
        if self.operation == "convert":
            return api.convert(source, output=output, **kwargs)
        if self.operation == "quantize":
            return api.quantize(source, output, **kwargs)
        if self.operation == "compile":
            return api.compile(source, output=output, **kwargs)
        raise AssertionError(f"unknown operation {self.operation}")

    def produce(self, source: Path, output: Path, **extra: Any) -> edgesmith.Artifact:
        """:meth:`do_operation`, for a call that must succeed: a broken output
        protocol (the core's BackendError) fails the check."""
        try:
            return self.do_operation(source, output, **extra)
        except BackendError as exc:
            raise AssertionError(f"{self.backend} {self.operation} failed: {exc}") from exc

    def record(self) -> Any:
        rec = get_manager().records.get(self.backend)
        assert rec is not None, f"backend {self.backend!r} is not registered (entry point missing?)"
        return rec

    # -- the checks -----------------------------------------------------------

    def test_registered_and_usable(self) -> None:
        rec = self.record()
        assert rec.status == "available", f"{self.backend} is {rec.status}: {rec.reason}"

    def test_capabilities_are_well_formed(self) -> None:
        info = self.record().info
        assert info.operations, f"{self.backend} declares no operation"
        assert set(info.devices) <= set(DEVICES)
        assert set(info.notes) <= {*OPERATIONS, "run"}
        labels = [op.label for op in info.operations]
        for op in info.operations:
            # Every declared operation names a handler that exists and takes the core's arguments.
            try:
                handler = op.resolve()
            except (ImportError, AttributeError) as exc:
                raise AssertionError(f"{op.label}: handler {op.handler!r} cannot be imported "
                                     f"({_first_line(exc)})") from exc
            assert callable(handler), f"{op.label}: handler {op.handler!r} is not callable"
            wanted = {"convert": 4, "quantize": 5, "compile": 5, "load": 3}[op.kind]
            params = [p for p in inspect.signature(handler).parameters.values()
                      if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
            assert len(params) >= wanted, f"{op.label}: {op.handler} takes {len(params)} arguments, not {wanted}"
            for o in op.options:
                assert o.help, f"{op.label}: option {o.name} has no help text"
                if o.default is not None:
                    try:
                        typed = o.convert(o.default)
                    except ValueError as exc:
                        raise AssertionError(f"{op.label}: default {o.default!r} of {o.name} is not "
                                             f"valid (it takes {exc})") from exc
                    assert typed == o.default, f"{op.label}: default of {o.name} is not valid"
        assert len(labels) == len(set(labels)), f"two operations share a label: {labels}"
        assert self.operation in info.kinds(), f"{self.backend} does not declare {self.operation}"

    def test_plugin_import_is_light(self) -> None:
        rec = self.record()
        module = (rec.module or "").split(":")[0]
        code = (
            "import sys, json, edgesmith.plugins as p; p.get_manager(); "
            f"import {module}; "
            f"print(json.dumps(sorted(m for m in {HEAVY_MODULES!r} if m in sys.modules)))"
        )
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
        assert out.returncode == 0, f"importing {module} failed: {out.stderr.strip()[-2000:]}"
        heavy = json.loads(out.stdout.strip().splitlines()[-1])
        assert heavy == [], f"importing {module} pulled in {', '.join(heavy)} (import vendor stacks in handlers)"

    def test_operation_writes_manifest(self, source: Path, tmp_path: Path) -> None:
        out = tmp_path / "work" / "out"
        with Fence(source, out.parent, tmp_path / "cwd", self.child_exit_s) as fence:
            art = self.produce(source, out)
        fence.check(self.backend, expected=["out"])
        assert isinstance(art, edgesmith.Artifact), f"the API returned {type(art).__name__}"
        assert art.path == out and out.is_dir()
        manifest = json.loads((out / MANIFEST_NAME).read_text())
        for key in REQUIRED_MANIFEST_KEYS:
            assert key in manifest, f"manifest lacks {key}"
        assert manifest["backend"]["name"] == self.backend
        assert manifest["operation"]["name"] == self.operation
        assert manifest["content_hash"] == content_hash(out)
        src = detect(source)
        assert manifest["parent"]["format"] == src.format
        src_manifest = src.manifest or {}
        assert manifest["parent"]["content_hash"] == (src_manifest.get("content_hash")
                                                     or content_hash(src.path))
        pairs = {"convert": self.record().info.converts, "quantize": self.record().info.quantizes,
                 "compile": self.record().info.compiles}[self.operation]
        assert (src.format, art.format) in pairs, "the result's format was not declared"
        # Recognised from its files alone, as a later run without the manifest would.
        (out / MANIFEST_NAME).rename(tmp_path / "manifest.json")
        try:
            found = detect(out).format
        except UserError as exc:
            found = f"nothing recognisable ({exc})"
        finally:
            (tmp_path / "manifest.json").rename(out / MANIFEST_NAME)
        assert found == art.format or (art.format, found) in FILE_ALIKE, \
            f"{self.backend} says it wrote {art.format} but its files are {found}"
        if art.entry:
            assert (out / art.entry).is_file(), f"the entry {art.entry} is not a file in the output"
        assert not _leftovers(out)

    def test_interrupted_operation_leaves_nothing(self, source: Path, tmp_path: Path) -> None:
        out = tmp_path / "work" / "out"
        fence = Fence(source, out.parent, tmp_path / "cwd", self.child_exit_s)
        reports: list[str] = []
        fired: dict[str, Any] = {}
        start = time.monotonic()

        def interrupt(description: str, completed: Any = None, total: Any = None) -> None:
            reports.append(description)
            elapsed = time.monotonic() - start
            if fired or len(reports) < self.interrupt_at or elapsed < self.interrupt_after_s:
                return
            fired.update(report=len(reports), what=description, seconds=elapsed,
                         children=fence.snapshot(), staged=bool(_leftovers(out)))
            raise KeyboardInterrupt

        outcome: BaseException | None = None
        with fence:
            start = time.monotonic()
            try:
                self.do_operation(source, out, progress=interrupt)
            except KeyboardInterrupt:
                if not fired:
                    raise  # a real Ctrl-C: stop the session
            except BaseException as exc:  # noqa: BLE001 - judged below
                outcome = exc
            else:
                where = (f"report {self.interrupt_at}" +
                         (f", {self.interrupt_after_s:g} s in" if self.interrupt_after_s else ""))
                if fired:
                    raise AssertionError(f"{self.backend} swallowed the KeyboardInterrupt raised by its "
                                         f"progress callback ({fired['what']!r}) and finished anyway")
                if not reports:
                    raise AssertionError(f"{self.backend} never reported progress (call ctx.progress "
                                         f"during long work)")
                raise AssertionError(
                    f"{self.backend} finished after {len(reports)} progress report(s) in "
                    f"{time.monotonic() - start:.1f} s, before the interrupt point ({where}): report "
                    f"progress while the work runs, or set interrupt_at / interrupt_after_s")
        if outcome is not None:
            if fired:
                raise AssertionError(f"{self.backend} turned the KeyboardInterrupt into "
                                     f"{_first_line(outcome)}; let it propagate") from outcome
            raise AssertionError(f"{self.backend} {self.operation} failed before the interrupt point: "
                                 f"{_first_line(outcome)}") from outcome
        assert fired["staged"], "the interrupt came outside the operation's staging"
        assert not out.exists(), f"{self.backend}: the interrupted job left {out}"
        assert not _leftovers(out), f"{self.backend}: the interrupted job left {_leftovers(out)}"
        if self.child_process:
            assert fired["children"], (
                f"no child process was running at the interrupt (progress report {fired['report']}, "
                f"{fired['seconds']:.1f} s in): raise interrupt_after_s so it comes while the worker "
                f"runs, or set child_process = False")
        fence.check(self.backend)

    def test_existing_output_is_kept_without_force(self, source: Path, tmp_path: Path) -> None:
        out = tmp_path / "out"
        out.mkdir()
        (out / "keep.txt").write_text("precious")
        with pytest.raises(OutputExistsError):
            self.do_operation(source, out)
        assert (out / "keep.txt").read_text() == "precious"
        self.produce(source, out, force=True)
        assert not (out / "keep.txt").exists() and (out / MANIFEST_NAME).exists()
        assert not _leftovers(out)

    def test_bad_inputs_give_one_line_errors(self, tmp_path: Path) -> None:
        junk = tmp_path / "junk"
        junk.mkdir()
        (junk / "config.json").write_text("{not json")
        cases = [("corrupt config.json", lambda o: self.do_operation(junk, o))]
        cases += self.bad_inputs(tmp_path)
        for n, (label, call) in enumerate(cases):
            out = tmp_path / f"bad-out-{n}"
            try:
                result = call(out)
            except UserError as exc:
                msg = str(exc)
            except Exception as exc:  # noqa: BLE001 - the check's verdict
                raise AssertionError(f"{label}: raised {_first_line(exc)}, not a UserError "
                                     f"(a one-line message the user can act on)") from exc
            else:
                with contextlib.suppress(Exception):
                    getattr(result, "close", lambda: None)()
                raise AssertionError(f"{label}: was accepted; it must fail with a UserError")
            assert msg.strip() and "\n" not in msg.strip(), f"{label}: error is not one line: {msg!r}"
            assert not out.exists() and not _leftovers(out), f"{label}: left output behind"

    def test_run_returns_text_and_timings(self, runnable: Path) -> None:
        with api.load(runnable, backend=self.backend) as runner:
            req = RunRequest(prompt="The morning train", max_tokens=self.run_tokens)
            pieces: list[str] = []
            first = runner.generate(req, on_text=pieces.append)
            again = runner.generate(req)
        assert runner.backend == self.backend and runner.load_s and runner.load_s > 0
        assert isinstance(first.text, str) and 1 <= first.generated_tokens <= self.run_tokens
        assert "".join(pieces) == first.text, "streamed pieces must add up to the text"
        assert first.token_ids == again.token_ids, "greedy decoding must be deterministic"
        t = first.timings
        assert t.ttft_s and t.ttft_s > 0 and t.prefill_tps and t.prefill_tps > 0
        assert t.peak_rss_mb and t.peak_rss_mb > 10
        if first.generated_tokens > 1:
            assert t.decode_tps and t.decode_tps > 0
        assert first.prompt_tokens > 0 and first.finish_reason in ("stop", "length")

    def test_seeded_sampling_repeats(self, runnable: Path) -> None:
        req = RunRequest(prompt="Rain came", max_tokens=self.run_tokens, temperature=1.0, seed=7)
        with api.load(runnable, backend=self.backend) as runner:
            a = runner.generate(req)
            b = runner.generate(req)
        assert a.token_ids == b.token_ids

    def test_chat_uses_template(self, runnable: Path) -> None:
        req = RunRequest(messages=({"role": "user", "content": "Hello there"},),
                         max_tokens=self.run_tokens)
        with api.load(runnable, backend=self.backend) as runner:
            prompt = runner.chat_prompt(req.messages)
            result = runner.generate(req)
        assert "Hello there" in prompt and prompt != "Hello there"
        assert result.prompt_tokens > 2

    def test_scores_are_log_probabilities(self, runnable: Path) -> None:
        if not self.scores:
            pytest.skip(f"{self.backend} does not score tokens for this artifact")
        with api.load(runnable, backend=self.backend) as runner:
            ids = runner.tokenize("The library was quiet except for the turning of pages.")
            lp = np.asarray(runner.logprobs(ids), dtype=np.float64)
        assert lp.ndim == 2 and lp.shape[0] == len(ids)
        sums = np.log(np.exp(lp).sum(axis=1))
        # Tight: a row off by c shifts every KL by -c (KLs of 1e-6 are measured) and
        # the perplexity by exp(-c).
        assert np.abs(sums).max() < 1e-5, f"rows must be log-softmax distributions (off by {np.abs(sums).max():.2g})"
        nll = -float(np.mean([lp[i, ids[i + 1]] for i in range(len(ids) - 1)]))
        assert math.isfinite(nll) and nll > 0
