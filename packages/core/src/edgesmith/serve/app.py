"""The ASGI application: OpenAI-compatible routes over one :class:`Engine`.

Routes: ``POST /v1/chat/completions``, ``POST /v1/completions`` (both with
``stream``), ``GET /v1/models``, ``GET /v1/models/{id}``, ``GET /health``.
Errors use the OpenAI shape ``{"error": {"message", "type", "param", "code"}}``
so the official clients raise their usual exceptions with our message.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ..errors import UserError
from ..runner import Runner
from . import schema
from .queue import Closed, Engine, Job, QueueFull
from .schema import BadRequest

log = logging.getLogger("edgesmith.serve")

#: Status logged for a request whose client left before the answer (nginx's convention).
CLIENT_GONE = 499
# A body over the limit is still read to its end, and dropped, so that a client
# that sends all of its body before reading the answer (http.client does) gets
# the 413 rather than a reset connection: closing a socket with unread data
# makes the kernel send a reset, which can destroy the answer on its way. The
# reading is bounded: up to _DRAIN_FACTOR times the limit or _DRAIN_MIN_BYTES,
# whichever is more, and for _DRAIN_S seconds; beyond either the server answers
# at once and hangs up.
_DRAIN_FACTOR = 8
_DRAIN_MIN_BYTES = 64 << 20
_DRAIN_S = 30.0


def create_app(
    runner: Runner,
    *,
    model_id: str,
    api_key: str | None = None,
    max_queue: int = 16,
    max_tokens_limit: int = 2048,
    max_body_bytes: int = 1 << 20,
    max_logprob_tokens: int = 1024,
) -> Starlette:
    """An app serving ``runner`` under the name ``model_id``. The caller keeps
    ownership of ``runner``; the app's worker stops at lifespan shutdown
    (or call ``app.state.engine.close()``)."""
    engine = Engine(runner, max_queue=max_queue, max_tokens_limit=max_tokens_limit,
                    max_logprob_tokens=max_logprob_tokens)
    created = int(time.time())
    fingerprint = f"edgesmith-{runner.backend or 'unknown'}"

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "model": model_id, "backend": runner.backend,
                             "queue": engine.status()})

    def model_card() -> dict[str, Any]:
        return {"id": model_id, "object": "model", "created": created,
                "owned_by": f"edgesmith/{runner.backend}"}

    async def models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [model_card()]})

    async def one_model(request: Request) -> Response:
        if request.path_params["model"] != model_id:
            raise BadRequest(f"no model {request.path_params['model']!r} here; this server has "
                             f"{model_id!r}", status=404, code="model_not_found")
        return JSONResponse(model_card())

    async def chat(request: Request) -> Response:
        body = schema.parse_json(await _read_body(request, max_body_bytes))
        return await _answer(request, schema.parse_chat(body, max_tokens_limit), chat=True)

    async def completions(request: Request) -> Response:
        body = schema.parse_json(await _read_body(request, max_body_bytes))
        return await _answer(request, schema.parse_completion(body, max_tokens_limit), chat=False)

    async def _answer(request: Request, parsed: schema.Parsed, chat: bool) -> Response:
        job = Job(parsed)
        try:
            engine.submit(job)
        except QueueFull as exc:
            return _error(503, f"the server is busy ({engine.max_queue} requests already waiting); "
                          f"retry after {exc.retry_after} s", "server_busy",
                          headers={"Retry-After": str(exc.retry_after)})
        request.state.job = job
        streaming = False
        try:
            # Wait for the worker to accept the prompt, so a prompt that is too
            # long still gets a proper 400 even when streaming was asked for.
            first = await _unless_gone(request, job.events.get())
            if first is None:
                return Response(status_code=CLIENT_GONE)
            kind, value = first
            if kind == "error":
                raise value
            reply = _Reply(job, model_id, fingerprint, chat)
            if parsed.stream:
                streaming = True  # from here on the event stream owns the job
                return StreamingResponse(_sse(reply, engine, request), media_type="text/event-stream",
                                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
            while True:
                event = await _unless_gone(request, job.events.get())
                if event is None:
                    return Response(status_code=CLIENT_GONE)
                kind, value = event
                if kind == "error":
                    raise value
                if kind == "done":
                    request.state.result = value
                    return JSONResponse(reply.whole(value))
        finally:
            # Also reached when the server cancels this task at shutdown.
            if not streaming:
                engine.cancel(job)

    routes = [
        Route("/health", _guarded(health)),
        Route("/v1/models", _guarded(models)),
        Route("/v1/models/{model:path}", _guarded(one_model)),
        Route("/v1/chat/completions", _guarded(chat), methods=["POST"]),
        Route("/v1/completions", _guarded(completions), methods=["POST"]),
    ]

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        what = "no such route" if exc.status_code == 404 else exc.detail
        return _error(exc.status_code, f"{what}: {request.method} {request.url.path}", "invalid_request_error")

    async def bad_request(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, BadRequest)
        return _error(exc.status, exc.message, exc.code or "invalid_request_error", param=exc.param)

    async def user_error(request: Request, exc: Exception) -> Response:
        return _error(400, str(exc), "invalid_request_error")

    async def closed(request: Request, exc: Exception) -> Response:
        return _error(503, str(exc), "server_shutting_down")

    async def gone(request: Request, exc: Exception) -> Response:
        return Response(status_code=CLIENT_GONE)

    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: http_error, BadRequest: bad_request, UserError: user_error,
                            Closed: closed, ClientDisconnect: gone},
        lifespan=_lifespan,
    )
    app.state.engine = engine
    app.add_middleware(_Gate, api_key=api_key)
    return app


_EXPECTED = (BadRequest, UserError, Closed, ClientDisconnect, HTTPException)


def _guarded(endpoint: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """Answer a bug or a backend failure with a JSON 500 and one log line,
    instead of Starlette's plain-text page and a re-raised traceback."""

    async def call(request: Request) -> Response:
        try:
            return await endpoint(request)
        except _EXPECTED:
            raise
        except Exception as exc:
            log.error("internal error on %s: %s: %s", request.url.path, type(exc).__name__, exc)
            return _error(500, f"internal error: {type(exc).__name__}: {exc}", "server_error")

    return call


@asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    try:
        yield
    finally:
        # Cancel what is queued or running and let the worker thread end.
        await asyncio.to_thread(app.state.engine.close)


class _Reply:
    """Builds OpenAI-shaped answers and stream chunks for one job."""

    def __init__(self, job: Job, model: str, fingerprint: str, chat: bool):
        self.job = job
        self.chat = chat
        self.head = {
            "id": ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex,
            "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": fingerprint,
        }

    def usage(self, result: Any) -> dict[str, int]:
        n = result.generated_tokens
        return {"prompt_tokens": result.prompt_tokens, "completion_tokens": n,
                "total_tokens": result.prompt_tokens + n}

    def timings(self, result: Any) -> dict[str, float | None]:
        t = result.timings
        return {"queue_s": self.job.queue_s, "ttft_s": t.ttft_s, "prefill_tps": t.prefill_tps,
                "decode_tps": t.decode_tps, "total_s": t.total_s, "peak_rss_mb": t.peak_rss_mb}

    def whole(self, result: Any) -> dict[str, Any]:
        # Log-probabilities (and echo's prompt) were added by the worker when asked for.
        logprobs = result.extra.get("logprobs")
        if self.chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": result.text},
                      "logprobs": logprobs, "finish_reason": result.finish_reason}
        else:
            choice = {"index": 0, "text": result.extra.get("echo", "") + result.text, "logprobs": logprobs,
                      "finish_reason": result.finish_reason}
        return {**self.head, "choices": [choice], "usage": self.usage(result),
                "timings": self.timings(result)}

    def chunk(self, text: str | None = None, *, role: bool = False, finish: str | None = None,
              extra: dict[str, Any] | None = None) -> str:
        head = {**self.head, "object": "chat.completion.chunk" if self.chat else "text_completion"}
        if self.chat:
            delta: dict[str, Any] = {"role": "assistant"} if role else {}
            if text is not None:
                delta["content"] = text
            choice: dict[str, Any] = {"index": 0, "delta": delta}
        else:
            choice = {"index": 0, "text": text or ""}
        choice.update({"logprobs": None, "finish_reason": finish})
        return _event({**head, "choices": [choice], **(extra or {})})

    def usage_chunk(self, result: Any) -> str:
        head = {**self.head, "object": "chat.completion.chunk" if self.chat else "text_completion"}
        return _event({**head, "choices": [], "usage": self.usage(result),
                       "timings": self.timings(result)})


def _event(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data, separators=(',', ':'))}\n\n"


async def _sse(reply: _Reply, engine: Engine, request: Request) -> AsyncIterator[str]:
    """Server-sent events for one job. Usage and timings appear once: in the
    final chunk, or in a chunk of their own when ``include_usage`` asks for it
    (clients that add up usage across chunks would otherwise count it twice)."""
    job = reply.job
    ended = False  # an answer or an error went out
    try:
        if reply.chat:
            yield reply.chunk("", role=True)
        while not ended:
            kind, value = await job.events.get()
            if kind == "text":
                yield reply.chunk(value)
            elif kind == "error":
                ended = True
                status, kind = ((400, "invalid_request_error") if isinstance(value, UserError) else
                                (503, "server_shutting_down") if isinstance(value, Closed) else
                                (500, "server_error"))
                request.state.status = status
                yield _event({"error": {"message": str(value), "type": kind, "param": None, "code": status}})
            elif kind == "done":
                ended = True
                request.state.result = value
                if job.parsed.include_usage:
                    yield reply.chunk(finish=value.finish_reason)
                    yield reply.usage_chunk(value)
                else:
                    yield reply.chunk(finish=value.finish_reason,
                                      extra={"usage": reply.usage(value), "timings": reply.timings(value)})
                yield "data: [DONE]\n\n"
    finally:
        # Also runs when the client hangs up: Starlette cancels this generator.
        if not ended:
            request.state.status = CLIENT_GONE
        engine.cancel(job)


async def _read_body(request: Request, limit: int) -> bytes:
    too_big = BadRequest(f"the request body is over this server's limit of {limit} bytes; "
                         f"send a shorter prompt", status=413, code="request_too_large")
    most = max(limit * _DRAIN_FACTOR, _DRAIN_MIN_BYTES)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > most:
        request.state.close = True
        raise too_big
    chunks, size, more = [], 0, True
    while more:
        body, more = await _next_chunk(request)
        size += len(body)
        if size > limit:
            break
        chunks.append(body)
    else:
        return b"".join(chunks)
    chunks.clear()
    if more:
        try:
            read_to_end = await asyncio.wait_for(_discard(request, size, most), _DRAIN_S)
        except asyncio.TimeoutError:
            read_to_end = False
        if not read_to_end:
            request.state.close = True
    raise too_big


async def _next_chunk(request: Request) -> tuple[bytes, bool]:
    """The next piece of the request body and whether more follows."""
    message = await request.receive()
    if message["type"] == "http.disconnect":
        raise ClientDisconnect()
    return message.get("body", b""), message.get("more_body", False)


async def _discard(request: Request, size: int, most: int) -> bool:
    """Read the rest of the body and drop it; ``False`` once over ``most`` bytes in all."""
    more = True
    while more:
        body, more = await _next_chunk(request)
        size += len(body)
        if size > most:
            return False
    return True


async def _unless_gone(request: Request, waiting: Awaitable[Any]) -> Any:
    """The result of ``waiting``, or ``None`` if the client disconnects first
    (or at the same time: nobody would read the answer)."""
    task = asyncio.ensure_future(waiting)
    watch = asyncio.ensure_future(_disconnected(request))
    try:
        done, _ = await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        # Also when this handler is itself cancelled (at shutdown). A task
        # cancelled here only ends at the loop's next turn: never ask it for a
        # result (that raised InvalidStateError for every client that left).
        for pending in (task, watch):
            if not pending.done():
                pending.cancel()
    if watch in done:
        watch.result()  # re-raises if receiving failed for another reason than a disconnect
        return None
    return task.result()


async def _disconnected(request: Request) -> None:
    # The body is already read, so the next message can only be the disconnect.
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _error(status: int, message: str, kind: str, *, param: str | None = None,
           headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": status}},
                        status_code=status, headers=headers)


class _Gate:
    """Outermost layer: the API key check and one log line per request."""

    def __init__(self, app: Callable[..., Awaitable[None]], api_key: str | None):
        self.app = app
        self.expected = f"Bearer {api_key}".encode() if api_key else None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        state = scope.setdefault("state", {})
        sent: dict[str, Any] = {}

        async def send_logged(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                sent["status"] = message["status"]
                if state.get("close"):
                    message = {**message, "headers": [*message.get("headers", []),
                                                      (b"connection", b"close")]}
            await send(message)

        try:
            if self.expected is not None and not self._authorized(scope):
                response = _error(401, "missing or wrong API key; send the header "
                                  "'Authorization: Bearer KEY'", "invalid_api_key")
                await response(scope, receive, send_logged)
            else:
                await self.app(scope, receive, send_logged)
        finally:
            _log_line(scope, state, sent.get("status"), time.perf_counter() - t0)

    def _authorized(self, scope: dict[str, Any]) -> bool:
        got = dict(scope["headers"]).get(b"authorization", b"")
        return hmac.compare_digest(got, self.expected or b"")


def _log_line(scope: dict[str, Any], state: dict[str, Any], status: int | None, seconds: float) -> None:
    client = scope.get("client")
    who = f"{client[0]}:{client[1]}" if client else "-"
    status = state.get("status") or status or CLIENT_GONE
    parts = [f'{who} "{scope["method"]} {scope["path"]}" {status} {seconds:.3f}s']
    if status == CLIENT_GONE:
        parts.append("client disconnected")
    job, result = state.get("job"), state.get("result")
    if job is not None and job.queue_s is not None:
        parts.append(f"queued {job.queue_s:.3f}s")
    if result is not None:
        parts.append(f"{result.prompt_tokens} prompt + {result.generated_tokens} completion tokens")
        if result.timings.decode_tps:
            parts.append(f"{result.timings.decode_tps:.1f} tok/s")
    log.info(" · ".join(parts))
