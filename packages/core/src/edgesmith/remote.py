"""Running an operation in the backend's own environment (the parent side).

When the chosen backend lives in a registered environment
(:mod:`edgesmith.environments`) and not in this one, its handlers run there:
convert/quantize/compile through one :mod:`edgesmith.worker` job
(:func:`edgesmith.envside.produce`), load as a :class:`RemoteRunner` that
drives the runner in a child (:mod:`edgesmith.runnerhost`). Everything that
decides safety (claims, manifests, typed options) stays in this process; the
handler gets the same arguments as in a single environment.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from . import childproc, environments
from .errors import BackendError, EdgesmithError, UserError
from .runner import Runner
from .types import Artifact, Context, Operation, RunRequest, RunResult, Timings

_CONTEXT_FIELDS = ("trust_remote_code", "allow_pickle", "threads", "force", "allow_requantize")


def _context(ctx: Context) -> dict[str, Any]:
    return {k: getattr(ctx, k) for k in _CONTEXT_FIELDS}


def handler(env: environments.Environment, backend: str, op: Operation) -> Callable[..., Any]:
    """A stand-in for ``op``'s handler that runs it in ``env``; same signature."""
    if op.kind == "load":
        def load(art: Artifact, options: Mapping[str, Any], ctx: Context) -> Runner:
            return RemoteRunner(env, backend, op, art, options, ctx)
        return load

    def produce(source: Artifact, *args: Any) -> Artifact:
        from . import envside, worker

        *extra, options, output, ctx = args
        payload: dict[str, Any] = {"backend": backend, "kind": op.kind, "label": op.label,
                                   "source": envside.artifact_dict(source), "options": dict(options),
                                   "output": str(output), "context": _context(ctx)}
        if op.kind == "quantize":
            payload["spec"] = extra[0].to_dict()
        elif op.kind == "compile":
            payload["device"] = extra[0]

        def event(msg: Mapping[str, Any]) -> None:
            ctx.progress(msg.get("message", ""), msg.get("completed"), msg.get("total"))

        answer = worker.run("edgesmith.envside:produce", payload, python=str(env.python),
                            env=environments.child_env(ctx.threads), on_event=event)
        try:
            return envside.artifact(answer.unwrap(f"{backend} {op.label} (in {env.path})"))
        except EdgesmithError as exc:
            # The child's traceback is in its log: shown with --debug (a note on the error).
            if answer.log:
                exc.__notes__ = [f"the worker's log ends:\n{answer.log[-3000:]}"]
            raise

    return produce


class RemoteRunner(Runner):
    """A runner loaded in another environment's Python, called over pipes.

    ``generate`` runs there whole, so its timings (and peak memory) are the
    backend's own, not this process's plus a pipe.
    """

    def __init__(self, env: environments.Environment, backend: str, op: Operation, art: Artifact,
                 options: Mapping[str, Any], ctx: Context):
        from . import envside
        from .scratch import scratch_dir

        self._scratch_cm = scratch_dir("runner")
        self._scratch = self._scratch_cm.__enter__()
        self._log: IO[str] = tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace")  # noqa: SIM115
        self._lock = threading.Lock()
        self._where = f"{backend} (in {env.path})"
        try:
            self._proc = childproc.popen([str(env.python), "-m", "edgesmith.runnerhost"], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=self._log, text=True,
                                         env=environments.child_env(ctx.threads))
        except BaseException:
            self._log.close()
            self._scratch_cm.__exit__(None, None, None)
            raise
        job = {"backend": backend, "label": op.label, "artifact": envside.artifact_dict(art),
               "options": dict(options), "context": _context(ctx), "scratch": str(self._scratch)}
        try:
            attrs = self._exchange(job)
        except BaseException:
            self._stop()
            raise
        self.context_length = attrs.get("context_length")
        specs = attrs.get("input_specs")
        self.input_specs = None if not specs else {
            k: (None if d is None else tuple(d), t) for k, (d, t) in specs.items()}

    # -- the pipe ---------------------------------------------------------------

    def _write(self, msg: Mapping[str, Any]) -> None:
        assert self._proc.stdin
        try:
            self._proc.stdin.write(json.dumps(msg) + "\n")
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise BackendError(f"{self._where}: {self._died()}") from exc

    def _died(self) -> str:
        from .worker import describe_exit

        code = self._proc.wait()
        self._log.seek(0)
        tail = self._log.read()[-1500:].strip()
        return describe_exit(code) + (f"; its log ends: {tail.splitlines()[-1]}" if tail else "")

    def _read(self) -> dict[str, Any]:
        assert self._proc.stdout
        line = self._proc.stdout.readline()
        if not line:
            raise BackendError(f"{self._where}: {self._died()}")
        return json.loads(line)

    def _exchange(self, msg: Mapping[str, Any], on_event: Callable[[dict[str, Any]], None] | None = None) -> Any:
        self._write(msg)
        while True:
            reply = self._read()
            if "event" in reply:
                if on_event:
                    on_event(reply)
                continue
            if reply.get("ok"):
                return reply.get("result", reply.get("attrs"))
            error = reply.get("error") or "failed"
            if reply.get("kind") == "user":
                raise UserError(error)
            raise BackendError(f"{self._where}: {error}")

    def _call(self, method: str, on_event: Callable[[dict[str, Any]], None] | None = None, **args: Any) -> Any:
        with self._lock:
            if self._proc.poll() is not None:
                raise BackendError(f"{self._where}: {self._died()}")
            return self._exchange({"method": method, "args": args}, on_event)

    # -- the Runner interface ------------------------------------------------------

    def tokenize(self, text: str, *, add_special: bool = True) -> list[int]:
        return self._call("tokenize", text=text, add_special=add_special)

    def detokenize(self, token_ids: Sequence[int]) -> str:
        return self._call("detokenize", ids=[int(i) for i in token_ids])

    def chat_prompt(self, messages: Sequence[Mapping[str, str]]) -> str:
        return self._call("chat_prompt", messages=[dict(m) for m in messages])

    def logprobs(self, token_ids: Sequence[int]) -> Any:
        import numpy as np

        path = Path(self._call("logprobs", ids=[int(i) for i in token_ids])["npy"])
        try:
            return np.load(path)
        finally:
            path.unlink(missing_ok=True)

    def infer(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        import numpy as np

        src = self._scratch / "infer-in.npz"
        np.savez(src, **{k: np.asarray(v) for k, v in inputs.items()})
        out = Path(self._call("infer", npz=str(src))["npz"])
        try:
            with np.load(out) as data:
                return {k: data[k] for k in data.files}
        finally:
            src.unlink(missing_ok=True)
            out.unlink(missing_ok=True)

    def generate(self, request: RunRequest, on_text: Callable[[str], None] | None = None) -> RunResult:
        import attrs

        def event(msg: dict[str, Any]) -> None:
            if on_text and msg.get("event") == "text":
                on_text(msg["text"])

        d = self._call("generate", event, request=attrs.asdict(request), stream=on_text is not None)
        return RunResult(text=d["text"], token_ids=d["token_ids"], prompt_tokens=d["prompt_tokens"],
                         finish_reason=d["finish_reason"], timings=Timings(**d["timings"]),
                         backend=self.backend, extra=d.get("extra") or {})

    def stream_tokens(self, prompt_ids: list[int], request: RunRequest) -> Iterator[int]:
        import attrs

        with self._lock:
            self._write({"method": "stream", "args": {"ids": [int(i) for i in prompt_ids],
                                                      "request": attrs.asdict(request)}})
            done = False
            try:
                while True:
                    reply = self._read()
                    if reply.get("event") == "token":
                        yield int(reply["id"])
                        continue
                    done = True
                    if not reply.get("ok"):
                        raise (UserError if reply.get("kind") == "user" else BackendError)(reply.get("error"))
                    return
            finally:
                if not done and self._proc.poll() is None:  # closed early: stop it, drain to its answer
                    self._write({"method": "cancel"})
                    while "event" in self._read():
                        pass

    def close(self) -> None:
        if self._proc.poll() is None:
            try:
                self._write({"method": "close"})
                self._proc.stdin.close()  # type: ignore[union-attr]
                self._proc.wait(timeout=30)
            except (BackendError, OSError, subprocess.TimeoutExpired):
                pass
        self._stop()

    def _stop(self) -> None:
        childproc.kill(self._proc)
        self._log.close()
        self._scratch_cm.__exit__(None, None, None)


def interpreter_for(record: Any) -> str | None:
    """The Python that runs ``record``'s backend: None for this one."""
    env = getattr(record, "environment", None)
    return str(env.python) if env is not None else None
