"""One model instance, one worker thread, a bounded first-in-first-out queue.

Backends are not safe to call from several threads at once and a small
machine has no room for a second copy of the model, so requests run one at a
time in arrival order. The queue is bounded: a request that would wait behind
``max_queue`` others is refused at once (the app answers 503) instead of
piling up memory and time-outs. A job cancelled while waiting leaves the queue
immediately; a job cancelled while running stops at its next text piece.

Results travel back to the event loop through an :class:`asyncio.Queue` fed
with ``loop.call_soon_threadsafe``, so the worker never blocks on a client.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import threading
import time
from typing import Any

import attrs

from ..errors import UnsupportedError, UserError
from ..runner import Runner
from ..types import RunRequest
from .schema import Parsed

log = logging.getLogger("edgesmith.serve")


class QueueFull(Exception):
    """No room in the queue; ``retry_after`` is a guess in whole seconds."""

    def __init__(self, retry_after: int):
        super().__init__(f"the queue is full; retry in {retry_after} s")
        self.retry_after = retry_after


class Closed(Exception):
    """The server is shutting down."""


class _Aborted(Exception):
    """Raised from ``on_text`` to stop a generation whose client went away."""


class Job:
    """One request on its way through the queue.

    Events, in order: ``("start", prompt_tokens)``, then ``("text", piece)``
    any number of times, then ``("done", RunResult)``; or ``("error", exc)``
    at any point.
    """

    def __init__(self, parsed: Parsed, loop: asyncio.AbstractEventLoop | None = None):
        self.parsed = parsed
        self.loop = loop or asyncio.get_running_loop()
        self.events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.cancelled = threading.Event()
        self.enqueued = time.monotonic()
        self.started: float | None = None

    @property
    def queue_s(self) -> float | None:
        return None if self.started is None else self.started - self.enqueued

    def emit(self, kind: str, value: Any = None) -> None:
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, (kind, value))
        except RuntimeError:  # the loop is closed: nobody is listening any more
            pass


class Engine:
    """Runs jobs on ``runner`` one at a time in a worker thread."""

    def __init__(self, runner: Runner, *, max_queue: int, max_tokens_limit: int):
        self.runner = runner
        self.max_queue = max_queue
        self.max_tokens_limit = max_tokens_limit
        self._waiting: collections.deque[Job] = collections.deque()
        self._cond = threading.Condition()
        self._running: Job | None = None
        self._closed = False
        self._seconds = 1.0  # running average of a job's time, for Retry-After
        self.counts = {"served": 0, "failed": 0, "cancelled": 0, "rejected": 0}
        self._thread = threading.Thread(target=self._work, name="edgesmith-serve-worker", daemon=True)
        self._thread.start()

    # -- called from the event loop -------------------------------------------

    def submit(self, job: Job) -> None:
        with self._cond:
            if self._closed:
                raise Closed("the server is shutting down")
            # max_queue requests may wait behind the one running.
            if len(self._waiting) + (self._running is not None) > self.max_queue:
                self.counts["rejected"] += 1
                ahead = len(self._waiting) + 1
                raise QueueFull(max(1, min(60, math.ceil(ahead * self._seconds))))
            self._waiting.append(job)
            self._cond.notify()

    def cancel(self, job: Job) -> None:
        """Forget ``job``: drop it from the queue, or stop it at its next piece."""
        if job.cancelled.is_set():
            return
        job.cancelled.set()
        with self._cond:
            try:
                self._waiting.remove(job)
            except ValueError:
                return
            self.counts["cancelled"] += 1

    def status(self) -> dict[str, Any]:
        with self._cond:
            return {"waiting": len(self._waiting), "running": self._running is not None,
                    "max_queue": self.max_queue, **self.counts}

    def drain(self) -> None:
        """Take no more work and refuse what is waiting; the running job goes on."""
        with self._cond:
            self._closed = True
            jobs = list(self._waiting)
            self._waiting.clear()
            self._cond.notify_all()
        for job in jobs:
            job.cancelled.set()
            job.emit("error", Closed("the server is shutting down"))

    def abort_running(self) -> None:
        """End the running job at its next piece with a "shutting down" error."""
        with self._cond:
            job = self._running
        if job is not None and not job.cancelled.is_set():
            job.cancelled.set()
            job.emit("error", Closed("the server is shutting down"))

    def close(self, timeout: float = 10.0) -> None:
        """Refuse what is waiting, stop what is running, wait for the worker."""
        self.drain()
        self.abort_running()
        self._thread.join(timeout)

    # -- the worker thread ------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._waiting and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                job = self._running = self._waiting.popleft()
            try:
                self._run(job)
            finally:
                with self._cond:
                    self._running = None

    def _run(self, job: Job) -> None:
        job.started = time.monotonic()
        if job.cancelled.is_set():  # its client left between the queue and here
            self.counts["cancelled"] += 1
            return
        try:
            request, prompt_tokens = self._fit(job.parsed)
            job.emit("start", prompt_tokens)

            def on_text(piece: str) -> None:
                if job.cancelled.is_set():
                    raise _Aborted
                job.emit("text", piece)

            result = self.runner.generate(request, on_text=on_text)
        except _Aborted:
            self.counts["cancelled"] += 1
            return
        except (UserError, Closed) as exc:
            self.counts["failed"] += 1
            job.emit("error", exc)
            return
        except Exception as exc:  # a backend failure must not kill the worker
            self.counts["failed"] += 1
            log.error("generation failed: %s: %s", type(exc).__name__, exc)
            job.emit("error", exc)
            return
        finally:
            self._seconds = 0.8 * self._seconds + 0.2 * (time.monotonic() - job.started)
        self.counts["served"] += 1
        job.emit("done", result)

    def _fit(self, parsed: Parsed) -> tuple[RunRequest, int]:
        """The request with max_tokens settled against the prompt and the context.

        Tokenizing happens here, in the worker, because backends do not
        promise that their tokenizer may run while another thread generates.
        """
        try:
            ids = self.runner.prompt_ids(parsed.request)
        except UnsupportedError as exc:
            if parsed.request.messages is None:
                raise
            raise UserError(f"backend {self.runner.backend} has no chat template for this model; "
                            f"send a prompt to /v1/completions instead") from exc
        if not ids:
            raise UserError("the prompt is empty: it gives no tokens; send some text")
        ctx = self.runner.context_length
        if ctx and len(ids) >= ctx:
            raise UserError(f"the prompt is {len(ids)} tokens but the model's context is {ctx}; "
                            f"shorten the prompt")
        room = (ctx - len(ids)) if ctx else self.max_tokens_limit
        if parsed.max_tokens is None:
            wanted = max(1, min(self.max_tokens_limit, room))
            return attrs.evolve(parsed.request, max_tokens=wanted), len(ids)
        if parsed.max_tokens > room:
            raise UserError(f"the prompt ({len(ids)} tokens) plus max_tokens ({parsed.max_tokens}) "
                            f"exceeds the model's context of {ctx}; shorten the prompt or lower max_tokens")
        return parsed.request, len(ids)
