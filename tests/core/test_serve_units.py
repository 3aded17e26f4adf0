"""`edgesmith serve` without a network: request validation and the queue."""

from __future__ import annotations

import asyncio
import sys
import threading
import time

import pytest

pytest.importorskip("starlette")

from edgesmith import Runner  # noqa: E402
from edgesmith.errors import UserError  # noqa: E402
from edgesmith.serve import schema  # noqa: E402
from edgesmith.serve.queue import Engine, Job, QueueFull  # noqa: E402
from edgesmith.serve.schema import BadRequest  # noqa: E402


class SlowRunner(Runner):
    """Characters are tokens; each generated token takes ``delay`` seconds."""

    backend = "slow"
    context_length = 64

    def __init__(self, delay: float = 0.01):
        self.delay = delay
        self.generated = 0

    def tokenize(self, text, *, add_special=True):
        return [ord(c) for c in text]

    def detokenize(self, token_ids):
        return "".join(map(chr, token_ids))

    def chat_prompt(self, messages):
        return "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant: "

    def stream_tokens(self, prompt_ids, request):
        for _ in range(request.max_tokens):
            time.sleep(self.delay)
            self.generated += 1
            yield ord("x")


def chat(**extra):
    return {"messages": [{"role": "user", "content": "hi"}], **extra}


# -- schema -------------------------------------------------------------------

def test_chat_body_becomes_a_run_request():
    p = schema.parse_chat(chat(max_tokens=5, temperature=0, stop="\n", seed=3, stream=True,
                               stream_options={"include_usage": True}, n=1), 100)
    r = p.request
    assert (r.max_tokens, r.temperature, r.stop, r.seed) == (5, 0.0, ("\n",), 3)
    assert r.messages == ({"role": "user", "content": "hi"},)
    assert p.stream and p.include_usage and p.max_tokens == 5


def test_defaults_follow_the_openai_api():
    p = schema.parse_chat(chat(), 100)
    assert p.max_tokens is None and p.request.temperature == 1.0 and not p.stream


def test_text_parts_and_developer_role():
    p = schema.parse_chat({"messages": [
        {"role": "developer", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
    ]}, 10)
    assert p.request.messages == ({"role": "system", "content": "be brief"}, {"role": "user", "content": "ab"})


@pytest.mark.parametrize("body, words", [
    (chat(bogus=1), "unknown field(s) 'bogus'"),
    (chat(max_tokens=-1), "max_tokens must be at least 1"),
    (chat(max_tokens=0), "max_tokens must be at least 1"),
    (chat(max_tokens=101), "over this server's limit of 100"),
    (chat(max_tokens=True), "max_tokens must be an integer"),
    (chat(max_tokens="5"), "max_tokens must be an integer"),
    (chat(temperature=3), "temperature must be between 0 and 2"),
    (chat(n=2), "n=2 is not supported"),
    (chat(n=True), "n=true is not supported"),
    (chat(tools=[{"type": "function"}]), "tools="),
    (chat(stop=["a"] * 5), "stop must be"),
    ({"messages": []}, "non-empty list"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "role \"tool\" is not served"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "text only"),
    ({}, "'messages' is required"),
    # Issue 14: each of these was a 500 or slipped through to the backend.
    ({"messages": [{"role": "user", "content": ""}]}, "prompt is empty"),
    ({"messages": [{"role": "system", "content": ""}, {"role": "user", "content": []}]}, "prompt is empty"),
    (chat(seed=-1), "seed must be between 0 and 4294967295"),
    (chat(seed=2**40), "seed must be between 0 and 4294967295"),
    (chat(top_k=2**40), "top_k must be 0 (off) or more, up to 2147483647"),
    (chat(temperature=10**400), "temperature must be between 0 and 2, got 1000"),
    (chat(stream_options={"include_usage": "yes"}), "include_usage must be true or false"),
    ({"messages": [{"role": ["user"], "content": "x"}]}, "role [\"user\"] is not served"),
    ({"messages": [{"role": "user", "content": "x", "name": 5}]}, "messages[0].name must be a string"),
    ({"messages": [{"role": "user", "content": "a\ud800b"}]}, "lone UTF-16 surrogate"),
    (chat(stop=["\udfff"]), "lone UTF-16 surrogate"),
    (chat(max_tokens=10**500), "max_tokens=1000000000000000000000000000000000000000... is over"),
    (chat(**{"x" * 1000: 1}), "unknown field(s) 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...'"),
])
def test_chat_refusals_name_the_field(body, words):
    with pytest.raises(BadRequest, match=None) as info:
        schema.parse_chat(body, 100)
    assert words in info.value.message and info.value.status == 400
    # One short line that can go into a JSON answer as UTF-8.
    assert "\n" not in info.value.message and len(info.value.message) < 400
    info.value.message.encode("utf-8")
    (info.value.param or "").encode("utf-8")


def test_a_null_token_limit_counts_as_absent():
    assert schema.parse_chat(chat(max_tokens=None, max_completion_tokens=3), 10).max_tokens == 3
    assert schema.parse_chat(chat(max_tokens=4, max_completion_tokens=None), 10).max_tokens == 4


def test_completion_body():
    assert schema.parse_completion({"prompt": ["one"], "max_tokens": 2}, 10).request.prompt == "one"
    for bad in ({"prompt": [1, "b"]}, {"prompt": ["a", "b"]}, {"prompt": "a", "echo": 1}, {}):
        with pytest.raises(BadRequest):
            schema.parse_completion(bad, 10)
    for empty in ({"prompt": ""}, {"prompt": [""]}):
        with pytest.raises(BadRequest, match="prompt is empty"):
            schema.parse_completion(empty, 10)


@pytest.mark.parametrize("raw, words", [
    (b"", "empty"), (b"{", "not valid JSON"), (b"[1]", "JSON object"), (b"\xff\xfe", "not valid JSON"),
    # Too deep for json's recursion, and deep enough to be refused after parsing.
    (b'{"messages": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", "nested too deeply"),
    (b'{"messages": ' + b"[" * 65 + b"]" * 65 + b"}", "nested too deeply"),
    (b'{"n": ' + b"7" * 5000 + b"}", "number with too many digits"),
])
def test_malformed_json(raw, words):
    with pytest.raises(BadRequest) as info:
        schema.parse_json(raw)
    assert words in info.value.message and "\n" not in info.value.message


def test_ordinary_nesting_is_accepted():
    body = schema.parse_json(b'{"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}]}]}')
    assert schema.parse_chat(body, 10).request.messages == ({"role": "user", "content": "a"},)


# -- queue ----------------------------------------------------------------------

async def _collect(job: Job) -> list[tuple[str, object]]:
    out = []
    while True:
        kind, value = await asyncio.wait_for(job.events.get(), 10)
        out.append((kind, value))
        if kind in ("done", "error"):
            return out


def test_jobs_run_in_arrival_order_and_overflow_is_refused():
    runner = SlowRunner(delay=0.02)

    async def main():
        engine = Engine(runner, max_queue=2, max_tokens_limit=16)
        try:
            jobs = [Job(schema.parse_completion({"prompt": f"p{i}", "max_tokens": 3}, 16)) for i in range(4)]
            for job in jobs[:3]:
                engine.submit(job)
            with pytest.raises(QueueFull) as info:
                engine.submit(jobs[3])
            assert 1 <= info.value.retry_after <= 60
            results = await asyncio.gather(*(_collect(j) for j in jobs[:3]))
            assert [r[0] for r in results] == [("start", 2)] * 3
            assert all(r[-1][1].text == "xxx" for r in results)
            # First in, first served.
            assert jobs[0].started < jobs[1].started < jobs[2].started
            assert engine.status()["served"] == 3 and engine.status()["rejected"] == 1
        finally:
            engine.close()

    asyncio.run(main())


def test_cancel_stops_a_running_job_and_frees_a_waiting_slot():
    runner = SlowRunner(delay=0.02)

    async def main():
        engine = Engine(runner, max_queue=1, max_tokens_limit=60)
        try:
            long = Job(schema.parse_completion({"prompt": "a", "max_tokens": 50}, 60))
            waiting = Job(schema.parse_completion({"prompt": "b", "max_tokens": 5}, 60))
            engine.submit(long)
            engine.submit(waiting)
            assert (await long.events.get())[0] == "start"
            engine.cancel(waiting)  # leaves the queue at once: room for another
            assert engine.status()["waiting"] == 0
            engine.submit(Job(schema.parse_completion({"prompt": "c", "max_tokens": 1}, 60)))
            await long.events.get()  # some text has come out
            engine.cancel(long)
            deadline = time.monotonic() + 5
            while engine.status()["running"] or engine.status()["waiting"]:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
            assert runner.generated < 50 and engine.status()["cancelled"] == 2
        finally:
            engine.close()

    asyncio.run(main())


def test_prompt_over_the_context_is_an_error_event():
    async def main():
        engine = Engine(SlowRunner(), max_queue=1, max_tokens_limit=60)
        try:
            too_long = Job(schema.parse_completion({"prompt": "y" * 70}, 60))
            no_room = Job(schema.parse_completion({"prompt": "y" * 40, "max_tokens": 30}, 60))
            fits = Job(schema.parse_completion({"prompt": "y" * 40}, 60))
            for job in (too_long, no_room, fits):
                engine.submit(job)
                events = await _collect(job)
                if job is fits:
                    # Without max_tokens it may use the room left in the context.
                    assert events[-1][1].generated_tokens == 24
                else:
                    assert events[0][0] == "error" and "context" in str(events[0][1])
        finally:
            engine.close()

    asyncio.run(main())


def test_importing_the_command_is_light():
    code = ("import sys, edgesmith.serve.cli; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('starlette', 'uvicorn', 'anyio')))")
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_close_ends_the_worker():
    async def main():
        engine = Engine(SlowRunner(delay=0.05), max_queue=4, max_tokens_limit=60)
        job = Job(schema.parse_completion({"prompt": "a", "max_tokens": 50}, 60))
        engine.submit(job)
        await job.events.get()
        await asyncio.to_thread(engine.close)
        assert not any(t.name == "edgesmith-serve-worker" and t.is_alive() for t in threading.enumerate())

    asyncio.run(main())


class BrokenRunner(SlowRunner):
    def stream_tokens(self, prompt_ids, request):
        yield ord("x")
        raise RuntimeError("vendor stack fell over")


def test_a_backend_failure_is_an_error_event_and_the_worker_lives_on():
    async def main():
        runner = BrokenRunner()
        engine = Engine(runner, max_queue=2, max_tokens_limit=8)
        try:
            bad = Job(schema.parse_completion({"prompt": "a", "max_tokens": 3}, 8))
            engine.submit(bad)
            events = await _collect(bad)
            assert events[-1][0] == "error" and "fell over" in str(events[-1][1])
            runner.stream_tokens = SlowRunner.stream_tokens.__get__(runner)
            good = Job(schema.parse_completion({"prompt": "a", "max_tokens": 3}, 8))
            engine.submit(good)
            assert (await _collect(good))[-1][1].text == "xxx"
            assert engine.status()["failed"] == 1 and engine.status()["served"] == 1
        finally:
            engine.close()

    asyncio.run(main())


def test_drain_refuses_waiting_jobs_and_lets_the_running_one_finish():
    from edgesmith.serve.queue import Closed

    async def main():
        engine = Engine(SlowRunner(delay=0.01), max_queue=2, max_tokens_limit=20)
        running = Job(schema.parse_completion({"prompt": "a", "max_tokens": 10}, 20))
        waiting = Job(schema.parse_completion({"prompt": "b", "max_tokens": 10}, 20))
        engine.submit(running)
        engine.submit(waiting)
        assert (await running.events.get())[0] == "start"
        engine.drain()
        assert isinstance((await _collect(waiting))[-1][1], Closed)
        assert (await _collect(running))[-1][1].text == "x" * 10
        with pytest.raises(Closed):
            engine.submit(Job(schema.parse_completion({"prompt": "c"}, 20)))
        await asyncio.to_thread(engine.close)

    asyncio.run(main())


def test_command_defaults_to_loopback_and_documents_its_limits():
    from click.testing import CliRunner

    from edgesmith.serve.cli import serve

    defaults = {p.name: p.default for p in serve.params}
    assert defaults["host"] == "127.0.0.1" and defaults["port"] == 8000
    assert defaults["max_queue"] >= 1 and defaults["max_body_bytes"] == 1 << 20
    out = CliRunner().invoke(serve, ["--help"])
    assert out.exit_code == 0
    for flag in ("--api-key", "--max-queue", "--max-tokens-limit", "--max-body-bytes", "--backend"):
        assert flag in out.output


def test_missing_serve_extra_is_a_user_error(monkeypatch):
    from click.testing import CliRunner

    from edgesmith.errors import UserError
    from edgesmith.serve.cli import serve

    monkeypatch.setitem(sys.modules, "uvicorn", None)
    out = CliRunner().invoke(serve, ["model-dir"])
    assert isinstance(out.exception, UserError) and "pip install 'edgesmith[serve]'" in str(out.exception)


def test_a_prompt_of_no_tokens_is_an_error_event():
    class Dropping(SlowRunner):
        def tokenize(self, text, *, add_special=True):
            return [ord(c) for c in text if not c.isspace()]

    async def main():
        engine = Engine(Dropping(), max_queue=1, max_tokens_limit=8)
        try:
            job = Job(schema.parse_completion({"prompt": "  \n ", "max_tokens": 2}, 8))
            engine.submit(job)
            kind, exc = (await _collect(job))[-1]
            assert kind == "error" and isinstance(exc, UserError) and "prompt is empty" in str(exc)
            assert engine.status()["failed"] == 1
        finally:
            engine.close()

    asyncio.run(main())


def test_no_chat_template_points_to_completions():
    class Plain(SlowRunner):
        chat_prompt = Runner.chat_prompt

    async def main():
        engine = Engine(Plain(), max_queue=1, max_tokens_limit=8)
        try:
            job = Job(schema.parse_chat(chat(max_tokens=2), 8))
            engine.submit(job)
            kind, exc = (await _collect(job))[-1]
            assert kind == "error" and "/v1/completions" in str(exc)
        finally:
            engine.close()

    asyncio.run(main())
