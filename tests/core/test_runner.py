"""The Runner base class: one timing definition, streaming, stop strings."""

from __future__ import annotations

import time

import pytest

from edgesmith import Runner, RunRequest
from edgesmith.errors import UserError


class ByteRunner(Runner):
    """Tokens are UTF-8 bytes: multi-byte characters arrive in pieces."""

    backend = "bytes"

    def __init__(self, reply: str, delay: float = 0.0):
        self.reply = list(reply.encode())
        self.delay = delay

    def tokenize(self, text, *, add_special=True):
        return list(text.encode())

    def detokenize(self, token_ids):
        return bytes(token_ids).decode("utf-8", errors="replace")

    def stream_tokens(self, prompt_ids, request):
        for tok in self.reply[: request.max_tokens]:
            time.sleep(self.delay)
            yield tok


def test_multibyte_text_streams_whole_characters():
    pieces = []
    r = ByteRunner("héllo wörld ✓").generate(RunRequest(prompt="x", max_tokens=100), on_text=pieces.append)
    assert r.text == "héllo wörld ✓" and "".join(pieces) == r.text
    assert all("\ufffd" not in p for p in pieces)
    assert r.finish_reason == "stop"


def test_stop_string_cuts_text_and_stream():
    pieces = []
    r = ByteRunner("one. two. three.").generate(RunRequest(prompt="x", stop=["two"]), on_text=pieces.append)
    assert r.text == "one. " and "".join(pieces) == "one. " and r.finish_reason == "stop"


def test_timing_definitions():
    r = ByteRunner("abcdef", delay=0.02).generate(RunRequest(prompt="abcd", max_tokens=6))
    t = r.timings
    assert r.finish_reason == "length" and r.generated_tokens == 6
    assert t.ttft_s == pytest.approx(0.02, abs=0.015)
    assert t.prefill_tps == pytest.approx(4 / t.ttft_s)
    # 5 intervals between 6 tokens of 20 ms each.
    assert t.decode_tps == pytest.approx(50, rel=0.35)
    assert t.total_s >= t.ttft_s and t.peak_rss_mb > 1


def test_context_overflow_is_a_user_error():
    runner = ByteRunner("x")
    runner.context_length = 8
    with pytest.raises(UserError, match="exceeds the model's context"):
        runner.generate(RunRequest(prompt="abcdef", max_tokens=4))


def test_no_chat_template_is_explained():
    with pytest.raises(UserError, match="chat template"):
        ByteRunner("x").generate(RunRequest(messages=({"role": "user", "content": "hi"},)))


def test_long_streams_match_whole_decoding():
    """Pieces add up to the whole text past many window restarts, for a
    SentencePiece-like tokenizer that drops the first word's leading space and
    for byte tokens that split multi-byte characters."""
    from edgesmith.runner import _IncrementalDecoder

    words = ["▁the", "▁rain", "s", "▁fell", "▁on", "▁roofs", ",", "▁and", "▁ran"]

    def sp_decode(ids):
        return "".join(words[i] for i in ids).replace("▁", " ").removeprefix(" ")

    ids = [i % len(words) for i in range(200)]
    dec = _IncrementalDecoder(sp_decode)
    text = "".join(dec.push(t) for t in ids) + dec.flush()
    assert text == sp_decode(ids)

    data = ("Grüße, 世界! ✓ " * 20).encode()
    dec = _IncrementalDecoder(lambda b: bytes(b).decode("utf-8", errors="replace"))
    pieces = [dec.push(b) for b in data] + [dec.flush()]
    assert "".join(pieces) == data.decode() and not any("\ufffd" in p for p in pieces)
