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
"""

from __future__ import annotations

import inspect
import json
import math
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

import edgesmith
from edgesmith import api
from edgesmith.errors import OutputExistsError, UserError
from edgesmith.formats import detect
from edgesmith.manifest import MANIFEST_NAME, TMP_MARK
from edgesmith.plugins import get_manager
from edgesmith.types import DEVICES, OPERATIONS, RunRequest
from edgesmith.util import content_hash

#: Modules that listing or importing a backend's plugin must never pull in.
HEAVY_MODULES = ("torch", "openvino", "mlx", "onnxruntime", "llama_cpp", "transformers",
                 "olive", "nncf", "onnxruntime_genai", "optimum", "tensorflow", "jax")

REQUIRED_MANIFEST_KEYS = ("schema_version", "format", "backend", "libraries", "operation",
                          "parent", "size_bytes", "content_hash", "timings", "created")


def _leftovers(output: Path) -> list[Path]:
    return sorted(output.parent.glob(f".{output.name}{TMP_MARK}*"))


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
            handler = op.resolve()
            assert callable(handler), f"{op.label}: handler {op.handler!r} is not callable"
            wanted = {"convert": 4, "quantize": 5, "compile": 5, "load": 3}[op.kind]
            params = [p for p in inspect.signature(handler).parameters.values()
                      if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
            assert len(params) >= wanted, f"{op.label}: {op.handler} takes {len(params)} arguments, not {wanted}"
            for o in op.options:
                assert o.help, f"{op.label}: option {o.name} has no help text"
                if o.default is not None:
                    assert o.convert(o.default) == o.default, f"{op.label}: default of {o.name} is not valid"
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
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout.strip().splitlines()[-1]) == []

    def test_operation_writes_manifest(self, source: Path, tmp_path: Path) -> None:
        out = tmp_path / "out"
        art = self.do_operation(source, out)
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
        assert detect(out).format == art.format
        if art.entry:
            assert (out / art.entry).is_file()
        assert not _leftovers(out)

    def test_interrupted_operation_leaves_nothing(self, source: Path, tmp_path: Path) -> None:
        out = tmp_path / "out"
        calls: list[str] = []

        def interrupt(description: str, completed: Any = None, total: Any = None) -> None:
            calls.append(description)
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            self.do_operation(source, out, progress=interrupt)
        assert calls, f"{self.backend} never reported progress (call ctx.progress on long work)"
        assert not out.exists() and not _leftovers(out)

    def test_existing_output_is_kept_without_force(self, source: Path, tmp_path: Path) -> None:
        out = tmp_path / "out"
        out.mkdir()
        (out / "keep.txt").write_text("precious")
        with pytest.raises(OutputExistsError):
            self.do_operation(source, out)
        assert (out / "keep.txt").read_text() == "precious"
        self.do_operation(source, out, force=True)
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
            with pytest.raises(UserError) as info:
                call(out)
            msg = str(info.value)
            assert msg and "\n" not in msg.strip(), f"{label}: error is not one line: {msg!r}"
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
        assert np.allclose(sums, 0.0, atol=1e-3), "rows must be log-softmax distributions"
        nll = -float(np.mean([lp[i, ids[i + 1]] for i in range(len(ids) - 1)]))
        assert math.isfinite(nll) and nll > 0
