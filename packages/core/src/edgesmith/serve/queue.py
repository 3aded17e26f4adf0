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
from ..types import RunRequest, RunResult, Timings
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

    def __init__(self, runner: Runner, *, max_queue: int, max_tokens_limit: int,
                 max_logprob_tokens: int = 1024):
        self.runner = runner
        self.max_queue = max_queue
        self.max_tokens_limit = max_tokens_limit
        #: Prompt + completion tokens a logprobs/echo request may have scored.
        self.max_logprob_tokens = max_logprob_tokens
        self._vocab: int | None = None
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
            parsed = job.parsed
            request, ids = self._fit(parsed)
            job.emit("start", len(ids))

            def on_text(piece: str) -> None:
                if job.cancelled.is_set():
                    raise _Aborted
                job.emit("text", piece)

            if parsed.max_tokens == 0:  # echo alone: score the prompt, generate nothing
                result = RunResult(text="", prompt_tokens=len(ids), finish_reason="length",
                                   timings=Timings(load_s=self.runner.load_s), backend=self.runner.backend)
            elif parsed.prompt_ids is not None:
                from ..promptids import generate_from_ids

                result = generate_from_ids(self.runner, ids, request, on_text=on_text)
            else:
                result = self.runner.generate(request, on_text=on_text)
            if parsed.logprobs is not None or parsed.echo:
                result = self._scored(parsed, ids, result)
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

    def _fit(self, parsed: Parsed) -> tuple[RunRequest, list[int]]:
        """The request with max_tokens settled against the prompt and the context,
        and the prompt's token ids.

        Tokenizing happens here, in the worker, because backends do not
        promise that their tokenizer may run while another thread generates.
        """
        if parsed.prompt_ids is not None:
            ids = list(parsed.prompt_ids)
            self._check_ids(ids)
        else:
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
        scoring = parsed.logprobs is not None or parsed.echo
        if scoring:
            what = "echo" if parsed.echo else "logprobs"
            asked = parsed.max_tokens if parsed.max_tokens is not None else 1
            if len(ids) + asked > self.max_logprob_tokens:
                raise UserError(f"{what} scores every token of the prompt and the completion: {len(ids)} prompt "
                                f"+ {asked} completion tokens is over this server's limit of "
                                f"{self.max_logprob_tokens} (--max-logprob-tokens); send a shorter prompt or "
                                f"a smaller max_tokens")
            room = min(room, self.max_logprob_tokens - len(ids))
        if parsed.max_tokens is None:
            wanted = max(1, min(self.max_tokens_limit, room))
            return attrs.evolve(parsed.request, max_tokens=wanted), ids
        if parsed.max_tokens > room:
            raise UserError(f"the prompt ({len(ids)} tokens) plus max_tokens ({parsed.max_tokens}) "
                            f"exceeds the model's context of {ctx}; shorten the prompt or lower max_tokens")
        return parsed.request, ids

    def _check_ids(self, ids: list[int]) -> None:
        """A prompt of token ids must be ids of this model's vocabulary (some stacks
        crash on others); its size is read once, from one scored token."""
        if self._vocab is None:
            import numpy as np

            probe = self.runner.tokenize("a", add_special=False)[:1] or [0]
            try:
                self._vocab = int(np.asarray(self.runner.logprobs(probe)).shape[-1])
            except UnsupportedError:
                raise UserError(f"backend {self.runner.backend} cannot score tokens, so a prompt of token ids "
                                f"cannot be checked against its vocabulary; send the prompt as text") from None
        bad = next((t for t in ids if t >= self._vocab), None)
        if bad is not None:
            raise UserError(f"prompt token id {bad} is outside this model's vocabulary (ids 0 to "
                            f"{self._vocab - 1}); send ids of this model's tokenizer")

    def _scored(self, parsed: Parsed, ids: list[int], result: RunResult) -> RunResult:
        """``result`` with its log-probabilities (and, for echo, the prompt text) in ``extra``."""
        from . import logprobs

        prompt = parsed.request.prompt if parsed.request.prompt is not None else self.runner.detokenize(ids)
        generated = logprobs.shown(self.runner, ids, result.token_ids, result.text)
        # A greedy generation that stopped before max_tokens with every token shown met
        # the end of sequence: list that token too, as OpenAI does (lm-eval's scorer,
        # asking for one token, drops the last one it is given).
        ended = (parsed.max_tokens != 0 and result.finish_reason == "stop" and parsed.request.temperature == 0
                 and len(generated) == len(result.token_ids)
                 and not any(s in self.runner.detokenize(result.token_ids) for s in parsed.request.stop))
        extra: dict[str, Any] = {}
        if parsed.echo:
            extra["echo"] = prompt
        if parsed.logprobs is not None:
            if parsed.request.messages is not None:
                extra["logprobs"] = logprobs.chat(self.runner, ids, generated, top=parsed.logprobs, ended=ended)
            else:
                extra["logprobs"] = logprobs.completion(self.runner, ids, generated, top=parsed.logprobs,
                                                        echo=parsed.echo, prompt_chars=len(prompt), ended=ended)
        return attrs.evolve(result, extra={**result.extra, **extra})
