"""A loaded Runner in a backend environment, driven over pipes by
:class:`edgesmith.remote.RemoteRunner` (``python -m edgesmith.runnerhost``).

Protocol: JSON lines. The parent's first line is the load job; the child
answers ``{"ok": true, "attrs": ...}`` or an error. Then each request
``{"method": ..., "args": {...}}`` gets zero or more events (``text`` pieces
of a streamed generation, ``token`` ids of :meth:`Runner.stream_tokens`) and
one final ``{"ok": ...}``. Arrays (log-probabilities, graph inputs and
outputs) travel as ``.npy``/``.npz`` files in the scratch directory the
parent names, not through the pipe. ``cancel`` stops a token stream early.
"""

from __future__ import annotations

import json
import queue
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import IO, Any

from .errors import UserError

CANCEL = "cancel"


class _Host:
    def __init__(self, out: IO[str], scratch: Path):
        self.out = out
        self.scratch = scratch
        self.requests: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.cancelled = threading.Event()
        self.runner: Any = None
        self.count = 0

    def send(self, **msg: Any) -> None:
        self.out.write(json.dumps(msg, default=float) + "\n")
        self.out.flush()

    def read(self) -> None:
        for line in sys.stdin:
            msg = json.loads(line)
            if msg.get("method") == CANCEL:
                self.cancelled.set()
            else:
                self.requests.put(msg)
        self.requests.put(None)

    def _file(self, suffix: str) -> Path:
        self.count += 1
        return self.scratch / f"host-{self.count}{suffix}"

    # -- the methods ----------------------------------------------------------

    def tokenize(self, text: str, add_special: bool = True) -> list[int]:
        return [int(i) for i in self.runner.tokenize(text, add_special=add_special)]

    def detokenize(self, ids: list[int]) -> str:
        return self.runner.detokenize(ids)

    def chat_prompt(self, messages: list[dict[str, str]]) -> str:
        return self.runner.chat_prompt(messages)

    def logprobs(self, ids: list[int]) -> dict[str, str]:
        import numpy as np

        path = self._file(".npy")
        np.save(path, np.asarray(self.runner.logprobs(ids), dtype=np.float32))
        return {"npy": str(path)}

    def infer(self, npz: str) -> dict[str, str]:
        import numpy as np

        with np.load(npz) as data:
            inputs = {k: data[k] for k in data.files}
        path = self._file(".npz")
        np.savez(path, **self.runner.infer(inputs))
        return {"npz": str(path)}

    def generate(self, request: dict[str, Any], stream: bool = False) -> dict[str, Any]:
        from .types import RunRequest

        on_text = (lambda piece: self.send(event="text", text=piece)) if stream else None
        return self.runner.generate(RunRequest(**request), on_text=on_text).to_dict()

    def stream(self, ids: list[int], request: dict[str, Any]) -> int:
        from .types import RunRequest

        self.cancelled.clear()
        n = 0
        tokens = self.runner.stream_tokens(list(ids), RunRequest(**request))
        try:
            for tok in tokens:
                if self.cancelled.is_set():
                    break
                self.send(event="token", id=int(tok))
                n += 1
        finally:
            getattr(tokens, "close", lambda: None)()
        return n

    def serve(self) -> None:
        while True:
            msg = self.requests.get()
            if msg is None or msg.get("method") == "close":
                return
            method = msg.get("method", "")
            try:
                if method.startswith("_") or method in ("send", "read", "serve") or not hasattr(self, method):
                    raise UserError(f"the runner host has no method {method!r}")
                self.send(ok=True, result=getattr(self, method)(**msg.get("args", {})))
            except Exception as exc:  # reported to the parent, which raises it there
                traceback.print_exc(file=sys.stderr)
                self.send(ok=False, **_failure(exc))


def main() -> int:
    from . import childproc, envside, worker

    childproc.watch_parent()
    out = worker.take_stdout()
    job = json.loads(sys.stdin.readline())
    host = _Host(out, Path(job["scratch"]))
    try:
        t0 = time.perf_counter()
        host.runner = envside.load(job)
        r = host.runner
        r.backend, r.load_s = job["backend"], time.perf_counter() - t0
        host.send(ok=True, attrs={"context_length": r.context_length, "load_s": r.load_s,
                                  "input_specs": _specs(r.input_specs)})
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        host.send(ok=False, **_failure(exc))
        return 1
    threading.Thread(target=host.read, name="edgesmith-host-reader", daemon=True).start()
    try:
        host.serve()
    finally:
        host.runner.close()
    return 0


def _failure(exc: Exception) -> dict[str, str]:
    """How an exception travels to the parent: a user's error keeps its message."""
    if isinstance(exc, UserError):
        return {"kind": "user", "error": str(exc)}
    return {"kind": "internal", "error": f"{type(exc).__name__}: {exc}"}


def _specs(specs: Any) -> Any:
    if not specs:
        return None
    import numpy as np

    return {name: [None if dims is None else list(dims), None if dtype is None else np.dtype(dtype).name]
            for name, (dims, dtype) in specs.items()}


if __name__ == "__main__":
    from edgesmith.runnerhost import main as _main

    sys.exit(_main())
