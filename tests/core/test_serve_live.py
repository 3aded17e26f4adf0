"""`edgesmith serve` on loopback, driven by the official `openai` client.

A real server process serves a tiny checkpoint through the numpy reference
backend (found through its entry point, like any installed backend). A second
server, in a thread, serves a deliberately slow runner so that queueing and
disconnects can be observed without timing luck.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("starlette")
openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")

from edgesmith import api  # noqa: E402
from edgesmith.types import RunRequest  # noqa: E402

from .conftest import env_with  # noqa: E402
from .test_serve_units import BrokenRunner, SlowRunner  # noqa: E402

KEY = "test-key-123"
SMALL = {"hidden_size": 64, "intermediate_size": 128, "layers": 1, "heads": 2, "kv_heads": 1}
SERVE = "from edgesmith.serve.cli import serve; serve()"


class ServerProcess:
    """``edgesmith serve`` in a subprocess on 127.0.0.1 with a free port; stderr collected."""

    def __init__(self, args: list[str], env: dict[str, str], start_s: float = 120):
        self.proc = subprocess.Popen([sys.executable, "-c", SERVE, *args, "--host", "127.0.0.1",
                                      "--port", "0"], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     text=True, env=env)
        self.lines: list[str] = []
        self._ready = threading.Event()
        self.url = ""
        threading.Thread(target=self._read, daemon=True).start()
        if not self._ready.wait(start_s) or not self.url:
            self.stop()
            raise RuntimeError("server did not start:\n" + "".join(self.lines))

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            m = re.search(r"at (http://127\.0\.0\.1:\d+)/v1", line)
            if m:
                self.url = m.group(1)
                self._ready.set()
        self._ready.set()

    def rss_mb(self) -> float:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def serve_env(*sites: Path) -> dict[str, str]:
    # One BLAS thread: the machine is shared and requests run one at a time anyway.
    return env_with(*sites, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")


@pytest.fixture(scope="module")
def small_model(tiny_model) -> Path:
    return tiny_model("llama", **SMALL)


@pytest.fixture(scope="module")
def server(ref_site, small_model) -> Iterator[ServerProcess]:
    srv = ServerProcess([str(small_model), "--backend", "ref", "--api-key", KEY, "--max-queue", "4",
                         "--max-tokens-limit", "64", "--max-body-bytes", "65536"], serve_env(ref_site))
    yield srv
    assert srv.stop() == 0, "".join(srv.lines)


@pytest.fixture
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0, timeout=60)


def reference(model: Path, **kw) -> str:
    with api.load(model, backend="ref") as runner:
        return runner.generate(RunRequest(temperature=0.0, **kw)).text


def test_models(client, small_model):
    ids = [m.id for m in client.models.list().data]
    assert ids == [small_model.name]
    assert client.models.retrieve(small_model.name).id == small_model.name


def test_chat_matches_a_local_run(client, small_model):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello."}]
    r = client.chat.completions.create(model="anything", messages=messages, max_tokens=6, temperature=0)
    assert r.object == "chat.completion" and r.model == small_model.name
    assert r.choices[0].message.content == reference(small_model, messages=messages, max_tokens=6)
    assert r.choices[0].finish_reason in ("length", "stop")
    assert r.usage.prompt_tokens > 5 and 1 <= r.usage.completion_tokens <= 6
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    timings = r.model_extra["timings"]
    assert timings["total_s"] > 0 and timings["queue_s"] >= 0 and timings["ttft_s"] > 0


def test_streaming_chat(client, small_model):
    messages = [{"role": "user", "content": "Count to three."}]
    whole = client.chat.completions.create(model="m", messages=messages, max_tokens=8, temperature=0)
    chunks = list(client.chat.completions.create(model="m", messages=messages, max_tokens=8,
                                                 temperature=0, stream=True,
                                                 stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == [whole.choices[0].finish_reason]
    usage = [c.usage for c in chunks if c.usage]
    assert len(usage) == 1 and usage[0].completion_tokens == whole.usage.completion_tokens
    assert chunks[-1].choices == [] and chunks[-1].model_extra["timings"]["total_s"] > 0


def test_completions(client, small_model):
    r = client.completions.create(model="m", prompt="Once upon a time", max_tokens=5, temperature=0)
    assert r.choices[0].text == reference(small_model, prompt="Once upon a time", max_tokens=5)
    assert r.usage.completion_tokens >= 1
    streamed = list(client.completions.create(model="m", prompt="Once upon a time", max_tokens=5,
                                              temperature=0, stream=True))
    assert "".join(c.choices[0].text for c in streamed) == r.choices[0].text
    assert streamed[-1].usage.completion_tokens == r.usage.completion_tokens


def test_health(server):
    r = httpx.get(server.url + "/health", headers={"Authorization": f"Bearer {KEY}"})
    assert r.json()["status"] == "ok" and r.json()["backend"] == "ref"


def _post(server, path: str, content: bytes, key: str | None = KEY) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    return httpx.post(server.url + path, content=content, headers=headers, timeout=60)


def test_bad_requests_get_clear_errors_and_the_server_keeps_serving(server, client):
    chat = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    cases = [
        (b'{"model": "m", "messages": [', 400, "not valid JSON"),
        (json.dumps({**chat, "max_tokens": -5}).encode(), 400, "max_tokens must be at least 1"),
        (json.dumps({**chat, "max_tokens": 65}).encode(), 400, "limit of 64"),
        (json.dumps({**chat, "frobnicate": True}).encode(), 400, "unknown field(s) 'frobnicate'"),
        (json.dumps({**chat, "messages": [{"role": "user", "content": "x" * 100_000}]}).encode(), 413,
         "limit of 65536 bytes"),
        (json.dumps({**chat, "messages": [{"role": "user", "content": "word " * 3000}]}).encode(), 400,
         "context"),
    ]
    for body, status, words in cases:
        r = _post(server, "/v1/chat/completions", body)
        assert r.status_code == status, (words, r.text)
        assert words in r.json()["error"]["message"]
    for key in (None, "wrong"):
        r = _post(server, "/v1/chat/completions", json.dumps(chat).encode(), key=key)
        assert r.status_code == 401 and "API key" in r.json()["error"]["message"]
    assert httpx.get(server.url + "/v1/models").status_code == 401

    # The same refusals through the official client raise its usual exceptions.
    with pytest.raises(openai.BadRequestError, match="max_tokens must be at least 1"):
        client.chat.completions.create(model="m", messages=chat["messages"], max_tokens=-1)
    with pytest.raises(openai.BadRequestError, match="unknown field"):
        client.chat.completions.create(model="m", messages=chat["messages"], extra_body={"bogus": 1})
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.url + "/v1", api_key="nope", max_retries=0).models.list()
    with pytest.raises(openai.APIStatusError) as info:
        client.completions.create(model="m", prompt="y" * 70_000, max_tokens=1)
    assert info.value.status_code == 413

    r = client.chat.completions.create(model="m", messages=chat["messages"], max_tokens=2)
    assert r.usage.completion_tokens >= 1 and server.proc.poll() is None


def test_one_log_line_per_request(server, client):
    before = len(server.lines)
    client.completions.create(model="m", prompt="log me", max_tokens=2, temperature=0)
    deadline = time.monotonic() + 5
    while len(server.lines) == before and time.monotonic() < deadline:
        time.sleep(0.02)
    new = server.lines[before:]
    assert len(new) == 1 and '"POST /v1/completions" 200' in new[0] and "completion tokens" in new[0]


# -- a slow runner served in this process: queueing and disconnects --------------

class SlowServer:
    """The app over a :class:`SlowRunner`, served by uvicorn in a thread on 127.0.0.1."""

    def __init__(self, grace: int = 5, runner: SlowRunner | None = None, max_queue: int = 1):
        import socket

        import uvicorn

        from edgesmith.serve import runserver as cli
        from edgesmith.serve.app import create_app

        self.runner = runner or SlowRunner(delay=0.02)
        self.runner.context_length = 4096
        app = create_app(self.runner, model_id="slow", max_queue=max_queue, max_tokens_limit=2000)
        self.engine = app.state.engine
        self.sock = socket.create_server(("127.0.0.1", 0))
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                                timeout_graceful_shutdown=grace)
        self.server = cli._server_class(uvicorn, self.engine)(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)
        self.sock.close()
        assert not self.thread.is_alive()


@pytest.fixture
def slow_server() -> Iterator[tuple[str, SlowRunner, object]]:
    srv = SlowServer()
    yield srv.url, srv.runner, srv.engine
    srv.stop()


def _wait_status(engine, **wanted) -> None:
    deadline = time.monotonic() + 10
    while {k: engine.status()[k] for k in wanted} != wanted:
        assert time.monotonic() < deadline, engine.status()
        time.sleep(0.01)


def _wait_idle(engine, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while engine.status()["running"] or engine.status()["waiting"]:
        assert time.monotonic() < deadline, engine.status()
        time.sleep(0.01)


def test_full_queue_gets_503_with_retry_after(slow_server):
    url, runner, engine = slow_server
    body = {"prompt": "a", "max_tokens": 100}
    results: list[httpx.Response] = []

    def post():
        results.append(httpx.post(url + "/v1/completions", json=body, timeout=30))

    threads = [threading.Thread(target=post) for _ in range(4)]
    threads[0].start()
    _wait_status(engine, running=True, waiting=0)
    threads[1].start()
    _wait_status(engine, running=True, waiting=1)
    for t in threads[2:]:
        t.start()
    for t in threads:
        t.join(30)
    codes = sorted(r.status_code for r in results)
    assert codes == [200, 200, 503, 503], codes
    busy = next(r for r in results if r.status_code == 503)
    assert int(busy.headers["Retry-After"]) >= 1 and "busy" in busy.json()["error"]["message"]
    ok = [r for r in results if r.status_code == 200]
    assert all(r.json()["choices"][0]["text"] == "x" * 100 for r in ok)
    # With the queue drained, the client's own retry succeeds.
    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    assert client.completions.create(model="slow", prompt="a", max_tokens=2).choices[0].text == "xx"


def test_disconnect_mid_stream_frees_the_slot(slow_server):
    url, runner, engine = slow_server
    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    stream = client.chat.completions.create(model="slow", messages=[{"role": "user", "content": "go"}],
                                            max_tokens=2000, stream=True)
    seen = 0
    for chunk in stream:
        seen += len(chunk.choices[0].delta.content or "")
        if seen >= 5:
            break
    stream.close()
    _wait_idle(engine)
    # 2000 tokens would take 40 s; the generation stopped soon after the client left.
    assert runner.generated < 200 and engine.status()["cancelled"] == 1
    assert client.completions.create(model="slow", prompt="a", max_tokens=3).choices[0].text == "xxx"


def test_disconnect_while_queued_or_waiting_frees_the_slot(slow_server):
    url, runner, engine = slow_server
    body = {"prompt": "a", "max_tokens": 2000}
    errors: list[Exception] = []

    def give_up():
        try:
            httpx.post(url + "/v1/completions", json=body, timeout=httpx.Timeout(5, read=0.5))
        except Exception as exc:
            errors.append(exc)

    # The first runs, the second waits in the queue; both clients give up.
    threads = [threading.Thread(target=give_up) for _ in range(2)]
    for t in threads:
        t.start()
        time.sleep(0.1)
    for t in threads:
        t.join(10)
    assert len(errors) == 2 and all(isinstance(e, httpx.ReadTimeout) for e in errors)
    _wait_idle(engine)
    assert runner.generated < 200 and engine.status()["cancelled"] == 2
    r = httpx.post(url + "/v1/completions", json={"prompt": "a", "max_tokens": 2}, timeout=30)
    assert r.status_code == 200


def test_serve_refuses_a_taken_port(ref_site, small_model):
    import socket

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = str(taken.getsockname()[1])
        out = subprocess.run([sys.executable, "-c", SERVE, str(small_model), "--backend", "ref",
                              "--port", port], capture_output=True, text=True,
                             env=serve_env(ref_site), timeout=60)
    assert out.returncode != 0 and "choose another --port" in out.stderr
    assert os.path.exists(small_model)


def test_shutdown_answers_every_client(monkeypatch):
    from edgesmith.serve import runserver as cli

    monkeypatch.setattr(cli, "GRACE_S", 2)
    srv = SlowServer(grace=2)
    results: dict[str, object] = {}

    def stream():
        with httpx.stream("POST", srv.url + "/v1/completions", timeout=30,
                          json={"prompt": "a", "max_tokens": 2000, "stream": True}) as r:
            results["stream"] = [line for line in r.iter_lines() if line]

    def queued():
        results["queued"] = httpx.post(srv.url + "/v1/completions", json={"prompt": "b", "max_tokens": 5},
                                       timeout=30)

    threads = [threading.Thread(target=stream), threading.Thread(target=queued)]
    for t, waiting in zip(threads, (0, 1), strict=True):
        t.start()
        _wait_status(srv.engine, running=True, waiting=waiting)
    t0 = time.monotonic()
    srv.stop()
    for t in threads:
        t.join(10)
    assert time.monotonic() - t0 < 6
    assert results["queued"].status_code == 503
    assert "shutting down" in results["queued"].json()["error"]["message"]
    last = json.loads(results["stream"][-1].removeprefix("data: "))
    assert last["error"]["code"] == 503 and "shutting down" in last["error"]["message"]


def test_a_backend_failure_is_a_500_and_the_server_keeps_serving():
    srv = SlowServer(runner=BrokenRunner(delay=0.0))
    try:
        r = httpx.post(srv.url + "/v1/completions", json={"prompt": "a", "max_tokens": 3}, timeout=30)
        assert r.status_code == 500 and "fell over" in r.json()["error"]["message"]
        with httpx.stream("POST", srv.url + "/v1/completions", timeout=30,
                          json={"prompt": "a", "max_tokens": 3, "stream": True}) as s:
            lines = [line for line in s.iter_lines() if line]
        assert json.loads(lines[-1].removeprefix("data: "))["error"]["code"] == 500
        assert httpx.get(srv.url + "/health", timeout=30).json()["queue"]["failed"] == 2
    finally:
        srv.stop()
