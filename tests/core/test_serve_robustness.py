"""`edgesmith serve` against hostile or careless clients (issue 14).

Disconnects, malformed and oversized bodies and empty prompts must get a
proper answer (a 4xx, or a quiet 499 in the log for a client that left),
never an internal error, and the server must go on serving. The validation
cases run against a real ``edgesmith serve`` process over the reference
backend; the disconnect cases use the slow in-process server so that the
queue can be filled without timing luck.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

pytest.importorskip("starlette")
httpx = pytest.importorskip("httpx")

from .test_serve_live import (  # noqa: E402
    KEY,
    SMALL,
    ServerProcess,
    SlowServer,
    _post,
    _wait_idle,
    _wait_status,
    serve_env,
)


@pytest.fixture(scope="module")
def server(ref_site, tiny_model) -> Iterator[ServerProcess]:
    """``edgesmith serve`` over the reference backend, with the limits of test_serve_live."""
    srv = ServerProcess([str(tiny_model("llama", **SMALL)), "--backend", "ref", "--api-key", KEY,
                         "--max-queue", "4", "--max-tokens-limit", "64", "--max-body-bytes", "65536"],
                        serve_env(ref_site))
    yield srv
    assert srv.stop() == 0, "".join(srv.lines)


CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
AUTH = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 80


def _new_lines(server, before: int) -> str:
    return "".join(server.lines[before:])


def _assert_serving(server) -> None:
    r = _post(server, "/v1/chat/completions", json.dumps(CHAT).encode())
    assert r.status_code == 200, r.text
    assert server.proc.poll() is None


def _one_line_error(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["code"] == status and error["type"] == "invalid_request_error"
    message = error["message"]
    assert message and "\n" not in message and len(message) < 500, message
    return message


# -- 1. disconnects ------------------------------------------------------------

class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def serve_log():
    records = _Records()
    logger = logging.getLogger("edgesmith.serve")
    old_level = logger.level
    logger.addHandler(records)
    logger.setLevel(logging.DEBUG)
    yield records
    logger.removeHandler(records)
    logger.setLevel(old_level)


def _raw_post(port: int, path: str, body: dict) -> socket.socket:
    data = json.dumps(body).encode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
    return sock


def _recv_all(sock: socket.socket) -> bytes:
    reply = b""
    while chunk := sock.recv(65536):
        reply += chunk
    return reply


def _wait_for(predicate, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline
        time.sleep(0.02)


@pytest.mark.parametrize("path, body", [
    ("/v1/completions", {"prompt": "a", "max_tokens": 2000}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "a"}], "max_tokens": 2000}),
])
def test_clients_leaving_while_queued_or_running_are_quiet_499s(serve_log, path, body):
    clients = 32
    srv = SlowServer(max_queue=clients)
    try:
        port = _host_port(srv.url)[1]
        socks = [_raw_post(port, path, body)]
        _wait_status(srv.engine, running=True, waiting=0)
        socks += [_raw_post(port, path, body) for _ in range(clients - 1)]
        _wait_status(srv.engine, running=True, waiting=clients - 1)
        for sock in socks:  # every client gives up: one running, the rest queued
            sock.close()
        _wait_idle(srv.engine)

        def logged() -> list[str]:
            return [m for m in serve_log.messages if f'"POST {path}"' in m]

        _wait_for(lambda: len(logged()) == clients)
        assert not [m for m in serve_log.messages if "internal error" in m or "Error" in m]
        assert all(" 499 " in m and "client disconnected" in m for m in logged()), logged()
        status = srv.engine.status()
        assert status["cancelled"] == clients and status["failed"] == 0
        assert srv.runner.generated < 200
        # Healthy after: the next request is served at once.
        assert httpx.get(srv.url + "/health", timeout=10).json()["queue"]["waiting"] == 0
        r = httpx.post(srv.url + "/v1/completions", json={"prompt": "a", "max_tokens": 3}, timeout=30)
        assert r.status_code == 200 and r.json()["choices"][0]["text"] == "xxx"
    finally:
        srv.stop()


# -- 2. deeply nested JSON ----------------------------------------------------------

@pytest.mark.parametrize("depth", [100, 20_000])
def test_deeply_nested_json_is_a_400(server, depth):
    before = len(server.lines)
    nested = "[" * depth + "]" * depth
    for path, field in (("/v1/chat/completions", "messages"), ("/v1/completions", "prompt")):
        r = _post(server, path, f'{{"model": "m", "{field}": {nested}}}'.encode())
        assert "nested too deeply" in _one_line_error(r, 400)
    r = _post(server, "/v1/completions", nested.encode())  # not an object, and too deep to read
    assert ("nested too deeply" if depth > 1000 else "JSON object") in _one_line_error(r, 400)
    assert "internal error" not in _new_lines(server, before)
    _assert_serving(server)


# -- 3. oversized bodies -----------------------------------------------------------

def test_a_10_mb_body_gets_a_413_that_http_client_can_read(server):
    host, port = _host_port(server.url)
    conn = http.client.HTTPConnection(host, port, timeout=60)
    try:
        body = json.dumps({**CHAT, "messages": [{"role": "user", "content": "x" * 10_000_000}]}).encode()
        conn.request("POST", "/v1/chat/completions", body=body, headers=AUTH)
        r = conn.getresponse()
        answer = json.loads(r.read())
        assert r.status == 413 and "limit of 65536 bytes" in answer["error"]["message"]
        # The body was read to its end, so the same connection serves the next request.
        conn.request("POST", "/v1/chat/completions", body=json.dumps(CHAT).encode(), headers=AUTH)
        r = conn.getresponse()
        assert r.status == 200 and json.loads(r.read())["usage"]["completion_tokens"] >= 1
    finally:
        conn.close()


def test_a_body_declared_far_too_big_gets_a_413_without_being_read(server):
    host, port = _host_port(server.url)
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Authorization: Bearer " + KEY.encode() + b"\r\n"
                     b"Content-Length: 100000000000\r\n\r\n")
        reply = _recv_all(sock)
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413") and b"connection: close" in head.lower()
    assert "limit of 65536 bytes" in json.loads(body)["error"]["message"]
    _assert_serving(server)


def test_reading_an_oversized_body_is_bounded_in_time(monkeypatch, serve_log):
    from edgesmith.serve import app as serve_app

    monkeypatch.setattr(serve_app, "_DRAIN_S", 0.5)
    srv = SlowServer()  # --max-body-bytes at its default, 1 MiB
    try:
        port = _host_port(srv.url)[1]
        head = (b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 3000000\r\n\r\n")
        # Over the limit, then the client stalls: the server stops waiting and answers.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(head + b"x" * 1_500_000)
            t0 = time.monotonic()
            reply = _recv_all(sock)
        assert time.monotonic() - t0 < 5
        status, _, body = reply.partition(b"\r\n\r\n")
        assert status.startswith(b"HTTP/1.1 413") and b"connection: close" in status.lower()
        assert "limit of 1048576 bytes" in json.loads(body)["error"]["message"]
        # Over the limit, then the client leaves: a quiet 499.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(head + b"x" * 1_500_000)
        _wait_for(lambda: any(" 499 " in m for m in serve_log.messages))
        assert not [m for m in serve_log.messages if "internal error" in m]
        r = httpx.post(srv.url + "/v1/completions", json={"prompt": "a", "max_tokens": 2}, timeout=30)
        assert r.status_code == 200
    finally:
        srv.stop()


# -- 4. empty prompts ------------------------------------------------------------------

@pytest.mark.parametrize("path, body", [
    ("/v1/completions", {"prompt": ""}),
    ("/v1/completions", {"prompt": [""], "max_tokens": 3}),
    ("/v1/completions", {"prompt": "", "stream": True}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": ""}]}),
    ("/v1/chat/completions", {"messages": [{"role": "system", "content": ""},
                                           {"role": "user", "content": []}], "stream": True}),
])
def test_an_empty_prompt_is_a_400_saying_so(server, path, body):
    before = len(server.lines)
    r = _post(server, path, json.dumps({"model": "m", **body}).encode())
    message = _one_line_error(r, 400)
    # Said in the server's terms, not the command line's (-p PROMPT).
    assert "prompt is empty" in message and "-p" not in message
    assert "internal error" not in _new_lines(server, before)


# -- 5. every other malformed field ----------------------------------------------------

MALFORMED = [
    {**CHAT, "max_tokens": -1},
    {**CHAT, "max_tokens": 10**30},
    {**CHAT, "max_tokens": 1e300},
    {**CHAT, "max_tokens": "5"},
    {**CHAT, "max_tokens": [5]},
    {**CHAT, "max_completion_tokens": 0},
    {**CHAT, "temperature": "hot"},
    {**CHAT, "temperature": -0.5},
    {**CHAT, "top_p": 2},
    {**CHAT, "top_k": -3},
    {**CHAT, "top_k": 10**30},
    {**CHAT, "seed": -1},
    {**CHAT, "seed": 2**70},
    {**CHAT, "seed": "abc"},
    {**CHAT, "stop": 5},
    {**CHAT, "stop": [""]},
    {**CHAT, "stream": "yes"},
    {**CHAT, "stream_options": {"include_usage": "yes"}},
    {**CHAT, "stream_options": []},
    {**CHAT, "n": 10**30},
    {**CHAT, "n": 0},
    {**CHAT, "logit_bias": {"1": 5}},
    {**CHAT, "logprobs": 3},
    {**CHAT, "top_logprobs": 2},
    {**CHAT, "model": 5},
    {**CHAT, "user": {}},
    {**CHAT, "messages": "hi"},
    {**CHAT, "messages": {"role": "user"}},
    {**CHAT, "messages": [None]},
    {**CHAT, "messages": [{"role": "user"}]},
    {**CHAT, "messages": [{"role": "user", "content": 123}]},
    {**CHAT, "messages": [{"role": "user", "content": [{"type": "text"}]}]},
    {**CHAT, "messages": [{"role": 7, "content": "hi"}]},
    {**CHAT, "messages": [{"role": "user", "content": "hi", "name": 5}]},
    {"model": "m", "prompt": None},
    {"model": "m", "prompt": 5},
    {"model": "m", "prompt": [1, 2.5, 3]},
    {"model": "m", "prompt": [10**9]},
    {"model": "m", "prompt": "hi", "suffix": "x"},
    {"model": "m", "prompt": "hi", "echo": "yes"},
    {"model": "m", "prompt": "hi", "logprobs": 99},
    {"model": "m", "prompt": "hi", "logprobs": 1, "stream": True},
]
RAW = [
    b"null",
    b'"a string"',
    b"{\"model\": \"m\", \"prompt\": \"hi\", \"max_tokens\": NaN}",
    b"{\"model\": \"m\", \"prompt\": \"hi\", \"temperature\": Infinity}",
    b"{\"model\": \"m\", \"prompt\": \"hi\", \"n\": " + b"9" * 5000 + b"}",
    b"{\"model\": \"m\", \"prompt\": \"\\ud800 lone surrogate\"}",
    b"{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"\\udfff\"}]}",
    b"{\"model\": \"m\", \"prompt\": \"hi\", \"stop\": [\"\\ud800\"]}",
    "{\"model\": \"m\", \"prompt\": \"caf\u00e9\"}".encode("latin-1"),
]


def test_malformed_fields_are_400s_never_500s(server):
    before = len(server.lines)
    cases = [(b, json.dumps(b).encode()) for b in MALFORMED] + [(raw, raw) for raw in RAW]
    wrong = []
    for shown, raw in cases:
        path = "/v1/completions" if b'"prompt"' in raw else "/v1/chat/completions"
        r = _post(server, path, raw)
        if r.status_code != 400:
            wrong.append(f"{r.status_code} for {str(shown)[:120]}: {r.text[:200]}")
        else:
            _one_line_error(r, 400)
    assert not wrong, "\n".join(wrong)
    assert "internal error" not in _new_lines(server, before)
    _assert_serving(server)
