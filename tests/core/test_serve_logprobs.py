"""`edgesmith serve` with log-probabilities: ``logprobs``/``echo`` on /v1/completions
(prompts as text or token ids), ``logprobs``/``top_logprobs`` on /v1/chat/completions,
their bounds, and the figures against ``Runner.logprobs`` (a runner whose
distributions are known exactly, then the numpy reference backend behind a live
server driven by the ``openai`` client)."""

from __future__ import annotations

import asyncio
import math

import pytest

pytest.importorskip("starlette")

from edgesmith import Runner, api  # noqa: E402
from edgesmith.serve import schema  # noqa: E402
from edgesmith.serve.queue import Engine, Job  # noqa: E402
from edgesmith.serve.schema import BadRequest  # noqa: E402

VOCAB = 128


class Ladder(Runner):
    """Characters are tokens; after token t the likeliest next is t + 1, then t + 2, ...
    (log-probabilities known in closed form), and greedy generation climbs the ladder."""

    backend = "ladder"
    context_length = 256

    def tokenize(self, text, *, add_special=True):
        return [ord(c) for c in text]

    def detokenize(self, token_ids):
        return "".join(map(chr, token_ids))

    def chat_prompt(self, messages):
        return "".join(m["content"] for m in messages) + ">"

    @staticmethod
    def row(t: int) -> list[float]:
        logits = [-((j - t - 1) % VOCAB) / 4 for j in range(VOCAB)]
        top = max(logits)
        norm = top + math.log(sum(math.exp(x - top) for x in logits))
        return [x - norm for x in logits]

    def logprobs(self, token_ids):
        import numpy as np

        return np.asarray([self.row(t) for t in token_ids], dtype=np.float32)

    def stream_tokens(self, prompt_ids, request):
        t = prompt_ids[-1]
        for _ in range(request.max_tokens):
            t = (t + 1) % VOCAB
            yield t


def _serve(parsed: schema.Parsed, runner: Runner | None = None, **engine_kw):
    """Run one parsed request through a real Engine; its result (or the error raised)."""

    async def go():
        engine = Engine(runner or Ladder(), max_queue=2, max_tokens_limit=32, **engine_kw)
        try:
            job = Job(parsed)
            engine.submit(job)
            while True:
                kind, value = await asyncio.wait_for(job.events.get(), 30)
                if kind == "error":
                    raise value
                if kind == "done":
                    return value
        finally:
            engine.close()

    return asyncio.run(go())


def completion(**body):
    return schema.parse_completion({"prompt": "abc", "temperature": 0, **body}, 32)


def test_echo_scores_every_prompt_token_and_the_completion():
    result = _serve(completion(max_tokens=2, logprobs=3, echo=True))
    lp = result.extra["logprobs"]
    assert result.extra["echo"] == "abc" and result.text == "de"
    assert lp["tokens"] == ["a", "b", "c", "d", "e"]
    assert lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None  # nothing before the first token
    for k in range(1, 5):
        assert lp["token_logprobs"][k] == pytest.approx(Ladder.row(ord("abcde"[k - 1]))[ord("abcde"[k])], abs=1e-5)
        top = lp["top_logprobs"][k]
        assert list(top) == [chr(ord("abcde"[k - 1]) + i) for i in (1, 2, 3)]  # the likeliest three, in order
        assert list(top.values()) == sorted(top.values(), reverse=True)
    assert lp["text_offset"] == [0, 1, 2, 3, 4]


def test_logprobs_without_echo_cover_the_completion_only():
    lp = _serve(completion(max_tokens=3, logprobs=0)).extra["logprobs"]
    assert lp["tokens"] == ["d", "e", "f"] and lp["top_logprobs"] == [{}, {}, {}]
    assert lp["text_offset"] == [3, 4, 5]  # characters into prompt + completion, as OpenAI counts
    assert all(x == pytest.approx(Ladder.row(0)[1], abs=1e-5) for x in lp["token_logprobs"])


def test_echo_with_no_tokens_to_generate_scores_the_prompt_alone():
    result = _serve(completion(max_tokens=0, logprobs=1, echo=True))
    assert result.text == "" and result.generated_tokens == 0 and result.prompt_tokens == 3
    assert result.extra["logprobs"]["tokens"] == ["a", "b", "c"]


def test_a_prompt_of_token_ids_is_scored_as_sent():
    result = _serve(schema.parse_completion({"prompt": [[97, 98]], "max_tokens": 1, "logprobs": 1, "echo": True,
                                             "temperature": 0}, 32))
    assert result.extra["echo"] == "ab" and result.text == "c"
    assert result.extra["logprobs"]["tokens"] == ["a", "b", "c"]
    with pytest.raises(Exception, match=f"outside this model's vocabulary \\(ids 0 to {VOCAB - 1}\\)"):
        _serve(schema.parse_completion({"prompt": [97, 5000], "max_tokens": 1}, 32))


class Ending(Ladder):
    """Stops after one token, as at an end-of-sequence token (which runners do not yield)."""

    def stream_tokens(self, prompt_ids, request):
        yield (prompt_ids[-1] + 1) % VOCAB


def test_the_end_of_sequence_that_stopped_greedy_decoding_is_listed():
    result = _serve(completion(max_tokens=4, logprobs=1, echo=True), Ending())
    assert result.text == "d" and result.finish_reason == "stop"
    lp = result.extra["logprobs"]
    # lm-eval asks for one token and drops the last listed: the prompt must stay whole.
    assert lp["tokens"] == ["a", "b", "c", "d", "e"] and len(lp["token_logprobs"]) == 5
    sampled = _serve(completion(max_tokens=4, logprobs=1, temperature=0.7), Ending())
    assert sampled.extra["logprobs"]["tokens"] == ["d"]  # not greedy: the next token is not known


def test_tokens_past_a_stop_string_are_not_listed():
    result = _serve(completion(max_tokens=6, logprobs=0, stop="f"))
    assert result.text == "de" and result.extra["logprobs"]["tokens"] == ["d", "e"]


def test_chat_logprobs_list_each_generated_token_with_bytes_and_alternatives():
    parsed = schema.parse_chat({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, "temperature": 0,
                                "logprobs": True, "top_logprobs": 2}, 32)
    content = _serve(parsed).extra["logprobs"]["content"]
    assert [c["token"] for c in content] == ["?", "@"]  # after "hi>": ">" + 1, + 2
    for c in content:
        assert c["bytes"] == list(c["token"].encode()) and len(c["top_logprobs"]) == 2
        assert c["top_logprobs"][0]["token"] == c["token"] and c["top_logprobs"][0]["logprob"] == c["logprob"]
    plain = _serve(schema.parse_chat({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1,
                                      "logprobs": True}, 32))
    assert plain.extra["logprobs"]["content"][0]["top_logprobs"] == []


def test_scored_requests_are_bounded():
    with pytest.raises(Exception, match="over this server's limit of 4 \\(--max-logprob-tokens\\)"):
        _serve(completion(max_tokens=2, logprobs=1), max_logprob_tokens=4)
    # Without max_tokens the completion shrinks to what the limit leaves.
    assert _serve(completion(logprobs=1), max_logprob_tokens=6).generated_tokens == 3


@pytest.mark.parametrize("body, param, words", [
    ({"logprobs": 21}, "logprobs", "between 0 and 20"),
    ({"logprobs": -1}, "logprobs", "between 0 and 20"),
    ({"logprobs": True}, "logprobs", "integer"),
    ({"echo": "yes"}, "echo", "true or false"),
    ({"logprobs": 1, "stream": True}, "logprobs", "stream"),
    ({"echo": True, "stream": True}, "echo", "stream"),
    ({"max_tokens": 0}, "max_tokens", "0 with echo"),
    ({"prompt": [1, -2]}, "prompt", "0 or more"),
    ({"prompt": [1, True]}, "prompt", "token ids"),
    ({"prompt": [1.5]}, "prompt", "token ids"),
    ({"prompt": []}, "prompt", "no ids"),
    ({"prompt": [[1], [2]]}, "prompt", "batches"),
    ({"prompt": [2**40]}, "prompt", "vocabulary id"),
])
def test_bad_completion_logprob_fields_are_400s(body, param, words):
    with pytest.raises(BadRequest, match=words) as info:
        schema.parse_completion({"prompt": "abc", **body}, 32)
    assert info.value.param == param and "\n" not in info.value.message


@pytest.mark.parametrize("body, param, words", [
    ({"logprobs": 3}, "logprobs", "true or false"),
    ({"top_logprobs": 2}, "top_logprobs", "needs logprobs: true"),
    ({"logprobs": True, "top_logprobs": 21}, "top_logprobs", "between 0 and 20"),
    ({"logprobs": True, "stream": True}, "logprobs", "stream"),
])
def test_bad_chat_logprob_fields_are_400s(body, param, words):
    with pytest.raises(BadRequest, match=words) as info:
        schema.parse_chat({"messages": [{"role": "user", "content": "hi"}], **body}, 32)
    assert info.value.param == param


def test_defaults_ask_for_nothing():
    p = completion(logprobs=None, echo=False)
    assert p.logprobs is None and not p.echo and p.prompt_ids is None
    assert completion(logprobs=False).logprobs is None  # the old "no logprobs" some clients still send
    chat = schema.parse_chat({"messages": [{"role": "user", "content": "hi"}], "logprobs": False}, 32)
    assert chat.logprobs is None


# -- a live server, the openai client, the numpy reference backend ------------------------

openai = pytest.importorskip("openai")


@pytest.fixture(scope="module")
def live(ref_site, tiny_model):
    from .test_serve_live import SMALL, ServerProcess, serve_env

    model = tiny_model("llama", **SMALL)
    srv = ServerProcess([str(model), "--backend", "ref", "--max-tokens-limit", "16", "--max-logprob-tokens", "64"],
                        serve_env(ref_site))
    yield srv, model
    assert srv.stop() == 0, "".join(srv.lines)


def test_live_logprobs_are_the_runners(live):
    srv, model = live
    client = openai.OpenAI(base_url=srv.url + "/v1", api_key="x", max_retries=0, timeout=60)
    prompt = "Alice was beginning to get"
    r = client.completions.create(model="m", prompt=prompt, max_tokens=2, temperature=0, logprobs=2, echo=True)
    lp = r.choices[0].logprobs
    with api.load(model, backend="ref") as runner:
        ids = runner.tokenize(prompt)
        want = runner.logprobs(ids)
    assert r.choices[0].text.startswith(prompt) and lp.token_logprobs[0] is None
    assert len(ids) < len(lp.tokens) <= len(ids) + 2 and len(lp.tokens) == len(lp.text_offset)
    for k in range(1, len(ids)):
        assert lp.token_logprobs[k] == pytest.approx(float(want[k - 1][ids[k]]), abs=1e-4)
        assert max(lp.top_logprobs[k].values()) == pytest.approx(float(want[k - 1].max()), abs=1e-4)
    assert "".join(lp.tokens) == r.choices[0].text
    c = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "Hello"}], max_tokens=3,
                                       temperature=0, logprobs=True, top_logprobs=3)
    content = c.choices[0].logprobs.content
    assert 1 <= len(content) <= 3 and all(len(t.top_logprobs) == 3 for t in content)
    assert all(t.logprob == pytest.approx(t.top_logprobs[0].logprob, abs=1e-5) for t in content)  # greedy
    with pytest.raises(openai.BadRequestError, match="--max-logprob-tokens"):
        client.completions.create(model="m", prompt="word " * 80, max_tokens=1, logprobs=1)
