"""A bounded load test of `edgesmith serve` on loopback.

64 concurrent clients (the official async `openai` client, no retries) send
500 requests, a mix of chat, streaming chat and completions with small
max_tokens, to a server whose queue holds 16. Every request must end in a
full answer or a clean 503 with Retry-After; the server must stay up, log
one line per request, and its resident memory must come back near where it
was before the load.
"""

from __future__ import annotations

import asyncio
import gc
import time

import pytest

pytest.importorskip("starlette")
openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")

from ..core.conftest import make_site  # noqa: E402
from ..core.test_serve_live import SMALL, ServerProcess, serve_env  # noqa: E402

CLIENTS = 64
REQUESTS = 500
KEY = "load-key"


async def _one(client: openai.AsyncOpenAI, n: int) -> str:
    """'ok' for a full answer, '503' for a clean refusal; anything else raises."""
    kind = n % 3
    try:
        if kind == 0:
            r = await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": f"request {n}"}], max_tokens=3, temperature=0)
            assert r.choices[0].finish_reason in ("stop", "length") and r.usage.completion_tokens >= 1
        elif kind == 1:
            stream = await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": f"stream {n}"}], max_tokens=3,
                temperature=0, stream=True)
            finish = [c.choices[0].finish_reason async for c in stream if c.choices]
            assert finish[-1] in ("stop", "length") and finish.count(None) == len(finish) - 1
        else:
            r = await client.completions.create(model="m", prompt=f"count {n}", max_tokens=2, temperature=0)
            assert r.choices[0].finish_reason in ("stop", "length") and r.usage.completion_tokens >= 1
        return "ok"
    except openai.APIStatusError as exc:
        if exc.status_code == 503 and int(exc.response.headers["Retry-After"]) >= 1:
            return "503"
        raise


async def _load(url: str) -> dict[str, int]:
    todo = iter(range(REQUESTS))
    outcomes: dict[str, int] = {"ok": 0, "503": 0}

    async def worker() -> None:
        async with openai.AsyncOpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0, timeout=120) as client:
            for n in todo:
                outcomes[await _one(client, n)] += 1

    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(CLIENTS))), timeout=400)
    return outcomes


def test_load_loses_no_request(tmp_path_factory, tiny_model):
    site = make_site(tmp_path_factory.mktemp("site-ref"), "ref", "edgesmith_ref.plugin", copy_ref=True)
    model = tiny_model("llama", **SMALL)
    srv = ServerProcess([str(model), "--backend", "ref", "--api-key", KEY, "--max-queue", "16",
                         "--max-tokens-limit", "8"], serve_env(site))
    try:
        warm = openai.OpenAI(base_url=srv.url + "/v1", api_key=KEY, max_retries=0)
        for n in range(30):
            warm.chat.completions.create(model="m", messages=[{"role": "user", "content": f"w{n}"}],
                                         max_tokens=3, stream=n % 2 == 1)
        time.sleep(0.5)
        before = srv.rss_mb()
        lines_before = len(srv.lines)

        t0 = time.perf_counter()
        outcomes = asyncio.run(_load(srv.url))
        seconds = time.perf_counter() - t0
        gc.collect()

        assert outcomes["ok"] + outcomes["503"] == REQUESTS and outcomes["ok"] >= CLIENTS, outcomes
        assert srv.proc.poll() is None
        health = httpx.get(srv.url + "/health", headers={"Authorization": f"Bearer {KEY}"}).json()
        assert health["queue"]["waiting"] == 0 and not health["queue"]["running"]
        assert health["queue"]["rejected"] == outcomes["503"]
        # Memory settles back: a little allocator slack is fine, growth per request is not.
        deadline = time.monotonic() + 10
        while srv.rss_mb() > before + 25 and time.monotonic() < deadline:
            time.sleep(0.5)
        after = srv.rss_mb()
        deadline = time.monotonic() + 5
        while len(srv.lines) < lines_before + REQUESTS + 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        logged = srv.lines[lines_before:]
        print(f"\nload: {outcomes} in {seconds:.1f} s ({REQUESTS / seconds:.0f} req/s); "
              f"RSS {before:.1f} -> {after:.1f} MiB; health {health}")
        assert after <= before + 25, (before, after)
        assert len(logged) == REQUESTS + 1  # and one for /health
        assert sum(' 503 ' in line for line in logged) == outcomes["503"]
    finally:
        code = srv.stop()
    assert code == 0, "".join(srv.lines[-20:])
