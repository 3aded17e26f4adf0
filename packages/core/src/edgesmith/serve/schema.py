"""Validation of OpenAI-style request bodies.

Anything the server cannot honour is refused with a 400 naming the field,
rather than silently ignored: a client that asks for ``n=3`` or tools and gets
one plain answer back would be misled. Fields that only have a meaning we
already give (``n=1``, zero penalties) are accepted at their default.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import attrs

from ..types import RunRequest


class BadRequest(Exception):
    """A request the server refuses; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, *, param: str | None = None, status: int = 400,
                 code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.status = status
        self.code = code


@attrs.frozen
class Parsed:
    """A validated request. ``max_tokens`` is ``None`` when the client left it
    out: the worker then allows up to the limit or the room left in the context
    (0 only with ``echo``: score the prompt, generate nothing).

    ``logprobs`` is None when not asked for, else how many alternatives to list
    per position (0: only the chosen token's); ``echo`` returns the prompt, and
    its tokens' log-probabilities, ahead of the completion; ``prompt_ids`` is a
    prompt sent as token ids (``request.prompt`` is then None)."""

    request: RunRequest
    max_tokens: int | None
    stream: bool
    include_usage: bool
    model: str | None
    logprobs: int | None = None
    echo: bool = False
    prompt_ids: tuple[int, ...] | None = None


_SAMPLING = ("model", "max_tokens", "temperature", "top_p", "top_k", "seed", "stop", "stream",
             "stream_options", "user")
# Accepted only at the value that asks for nothing we do not do.
_DEFAULT_ONLY: dict[str, tuple[Any, ...]] = {
    "n": (1,),
    "presence_penalty": (0,),
    "frequency_penalty": (0,),
    "logit_bias": ({},),
}
_CHAT_DEFAULT_ONLY: dict[str, tuple[Any, ...]] = {
    "response_format": ({"type": "text"},),
    "tools": ([],),
    "tool_choice": ("none",),
    "parallel_tool_calls": (False, True),
}
_COMPLETION_DEFAULT_ONLY: dict[str, tuple[Any, ...]] = {"best_of": (1,), "suffix": ("",)}

#: Deeper than any body this API needs (a chat body nests 5 levels); refused so that
#: no later step (comparison, an error message quoting the value) can recurse too far.
MAX_DEPTH = 64
#: Seeds every backend can take (llama.cpp keeps 32 bits); refused rather than folded.
MAX_SEED = 2**32 - 1
#: top_k beyond a C int cannot mean anything and would overflow some backends.
MAX_TOP_K = 2**31 - 1
#: Alternatives per position a request may ask for (OpenAI's chat API allows 20).
MAX_TOP_LOGPROBS = 20
#: A prompt sent as token ids: ids beyond a C int cannot be a vocabulary entry.
MAX_TOKEN_ID = 2**31 - 1

CHAT_FIELDS = frozenset(("messages", "max_completion_tokens", "logprobs", "top_logprobs", *_SAMPLING,
                         *_DEFAULT_ONLY, *_CHAT_DEFAULT_ONLY))
COMPLETION_FIELDS = frozenset(("prompt", "logprobs", "echo", *_SAMPLING, *_DEFAULT_ONLY,
                               *_COMPLETION_DEFAULT_ONLY))
_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


def parse_json(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        raise BadRequest("the request body is empty; send a JSON object")
    too_deep = BadRequest(f"the request body is nested too deeply (more than {MAX_DEPTH} levels of "
                          f"arrays and objects); send a flatter JSON object")
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"the request body is not valid JSON ({exc}); send a JSON object") from None
    except RecursionError:
        raise too_deep from None
    except ValueError:
        # json.loads turns a number into an int before any check of ours; Python
        # refuses integers of more than a few thousand digits (sys.get_int_max_str_digits).
        raise BadRequest("the request body has a number with too many digits; send numbers of an "
                         "ordinary size") from None
    if not isinstance(body, dict):
        raise BadRequest(f"the request body must be a JSON object, not {type(body).__name__}")
    if _deeper_than(body, MAX_DEPTH):
        raise too_deep
    return body


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether arrays and objects nest more than ``limit`` levels (without recursing)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        if depth > limit:
            return True
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return False


def parse_chat(body: Mapping[str, Any], max_tokens_limit: int) -> Parsed:
    _check_fields(body, CHAT_FIELDS, {**_DEFAULT_ONLY, **_CHAT_DEFAULT_ONLY})
    if "messages" not in body:
        raise BadRequest("'messages' is required: a list of {role, content} objects", param="messages")
    if body.get("max_tokens") is not None and body.get("max_completion_tokens") is not None:
        raise BadRequest("give max_tokens or max_completion_tokens, not both", param="max_tokens")
    messages = _messages(body["messages"])
    if not any(m["content"] for m in messages):
        raise BadRequest("the prompt is empty: every message in 'messages' has empty content; "
                         "send some text", param="messages")
    key = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    wanted = body.get("logprobs")
    if wanted is not None and not isinstance(wanted, bool):
        raise BadRequest(f"logprobs must be true or false here (chat), got {_show(wanted)}; ask for "
                         f"alternatives with top_logprobs", param="logprobs")
    top = _top_logprobs(body, "top_logprobs")
    if top is not None and not wanted:
        raise BadRequest("top_logprobs needs logprobs: true", param="top_logprobs")
    return _parsed(body, max_tokens_limit, key, messages=messages, logprobs=(top or 0) if wanted else None)


def parse_completion(body: Mapping[str, Any], max_tokens_limit: int) -> Parsed:
    _check_fields(body, COMPLETION_FIELDS, {**_DEFAULT_ONLY, **_COMPLETION_DEFAULT_ONLY})
    if "prompt" not in body:
        raise BadRequest("'prompt' is required: a string", param="prompt")
    prompt = body["prompt"]
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
        prompt = prompt[0]  # a batch of one
    ids = _token_ids(prompt) if isinstance(prompt, list) else None
    if ids is None and not isinstance(prompt, str):
        raise BadRequest("'prompt' must be one string or one array of token ids (batches are not served)",
                         param="prompt")
    if ids is None:
        _check_text(prompt, "prompt")
        if not prompt:
            raise BadRequest("the prompt is empty; send the text to continue in 'prompt'", param="prompt")
    echo = body.get("echo")
    if echo is not None and not isinstance(echo, bool):
        raise BadRequest("echo must be true or false", param="echo")
    # false: the old default "no log-probabilities", which some clients still send.
    logprobs = None if body.get("logprobs") is False else _top_logprobs(body, "logprobs")
    return _parsed(body, max_tokens_limit, "max_tokens", prompt=None if ids is not None else prompt,
                   logprobs=logprobs, echo=bool(echo), prompt_ids=ids)


def _token_ids(value: list[Any]) -> tuple[int, ...]:
    if not value:
        raise BadRequest("the prompt is empty: the token array has no ids; send some", param="prompt")
    if not all(isinstance(t, int) and not isinstance(t, bool) for t in value):
        raise BadRequest("'prompt' must be one string or one array of token ids (whole numbers); "
                         "batches are not served", param="prompt")
    bad = next((t for t in value if not 0 <= t <= MAX_TOKEN_ID), None)
    if bad is not None:
        raise BadRequest(f"prompt token id {_show(bad)} is not a vocabulary id; ids are 0 or more",
                         param="prompt")
    return tuple(value)


def _top_logprobs(body: Mapping[str, Any], name: str) -> int | None:
    """How many alternatives per position ``name`` asks for, bounded (None: not asked)."""
    n = _opt_int(body, name)
    if n is not None and not 0 <= n <= MAX_TOP_LOGPROBS:
        raise BadRequest(f"{name} must be between 0 and {MAX_TOP_LOGPROBS}, got {_show(n)}", param=name)
    return n


def _check_fields(body: Mapping[str, Any], known: frozenset[str],
                  default_only: Mapping[str, tuple[Any, ...]]) -> None:
    unknown = sorted(set(body) - known)
    if unknown:
        shown = ", ".join(map(_name, unknown[:5])) + (", ..." if len(unknown) > 5 else "")
        raise BadRequest(f"unknown field(s) {shown}; this endpoint accepts "
                         f"{', '.join(sorted(known))}", param=_safe(unknown[0]))
    for name, allowed in default_only.items():
        value = body.get(name)
        if value is not None and not any(_same(value, a) for a in allowed):
            raise BadRequest(f"{name}={_show(value)} is not supported by this server; "
                             f"leave {name} out", param=name)


def _same(a: Any, b: Any) -> bool:
    # True == 1 in Python; JSON true must not pass for n=1.
    return type(a) is type(b) and a == b or (
        isinstance(a, (int, float)) and not isinstance(a, bool) and isinstance(b, int)
        and not isinstance(b, bool) and a == b)


def _messages(value: Any) -> tuple[dict[str, str], ...]:
    if not isinstance(value, list) or not value:
        raise BadRequest("'messages' must be a non-empty list of {role, content} objects",
                         param="messages")
    out = []
    for i, m in enumerate(value):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise BadRequest(f"{where} must be an object with role and content", param=where)
        extra = sorted(set(m) - {"role", "content", "name"})
        if extra:
            raise BadRequest(f"{where} has unsupported field(s) {', '.join(map(_name, extra[:5]))}; "
                             f"send role and content only", param=where)
        role = m.get("role")
        if not isinstance(role, str) or role not in _ROLES:
            raise BadRequest(f"{where}.role {_show(role)} is not served; use one of "
                             f"{', '.join(_ROLES)}", param=f"{where}.role")
        if m.get("name") is not None and not isinstance(m["name"], str):
            raise BadRequest(f"{where}.name must be a string", param=f"{where}.name")
        out.append({"role": _ROLES[role], "content": _content(m.get("content"), where)})
    return tuple(out)


def _content(value: Any, where: str) -> str:
    if isinstance(value, str):
        _check_text(value, f"{where}.content")
        return value
    if isinstance(value, list):
        parts = []
        for part in value:
            if not (isinstance(part, dict) and part.get("type") == "text"
                    and isinstance(part.get("text"), str)):
                raise BadRequest(f"{where}.content has a non-text part; this server takes text only",
                                 param=f"{where}.content")
            _check_text(part["text"], f"{where}.content")
            parts.append(part["text"])
        return "".join(parts)
    raise BadRequest(f"{where}.content must be a string or a list of text parts",
                     param=f"{where}.content")


def _parsed(body: Mapping[str, Any], limit: int, tokens_key: str, *, prompt: str | None = None,
            messages: tuple[dict[str, str], ...] | None = None, logprobs: int | None = None,
            echo: bool = False, prompt_ids: tuple[int, ...] | None = None) -> Parsed:
    max_tokens = _opt_int(body, tokens_key)
    if max_tokens is not None:
        if max_tokens == 0 and echo:
            pass  # OpenAI's way to score a prompt without generating
        elif max_tokens < 1:
            least = "1 (or 0 with echo: true)" if messages is None else "1"
            raise BadRequest(f"{tokens_key} must be at least {least}, got {_show(max_tokens)}", param=tokens_key)
        if max_tokens > limit:
            raise BadRequest(f"{tokens_key}={_show(max_tokens)} is over this server's limit of {limit}; "
                             f"ask for {limit} or fewer", param=tokens_key)
    temperature = _opt_number(body, "temperature", 0.0, 2.0)
    top_p = _opt_number(body, "top_p", 0.0, 1.0)
    if top_p is not None and top_p == 0:
        raise BadRequest("top_p must be above 0 (use temperature 0 for greedy decoding)", param="top_p")
    top_k = _opt_int(body, "top_k")
    if top_k is not None and not 0 <= top_k <= MAX_TOP_K:
        raise BadRequest(f"top_k must be 0 (off) or more, up to {MAX_TOP_K}, got {_show(top_k)}",
                         param="top_k")
    seed = _opt_int(body, "seed")
    if seed is not None and not 0 <= seed <= MAX_SEED:
        raise BadRequest(f"seed must be between 0 and {MAX_SEED}, got {_show(seed)}", param="seed")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise BadRequest("stream must be true or false", param="stream")
    if stream and (logprobs is not None or echo):
        what = "echo" if echo else "logprobs"
        raise BadRequest(f"{what} is not served with stream: true; leave stream out to get it", param=what)
    options = body.get("stream_options")
    include_usage = False
    if options is not None:
        if not isinstance(options, dict) or set(options) - {"include_usage"}:
            raise BadRequest("stream_options accepts only include_usage", param="stream_options")
        include_usage = options.get("include_usage")
        if include_usage is not None and not isinstance(include_usage, bool):
            raise BadRequest("stream_options.include_usage must be true or false",
                             param="stream_options")
        include_usage = bool(include_usage)
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise BadRequest("model must be a string", param="model")
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise BadRequest("user must be a string", param="user")
    request = RunRequest(
        prompt=prompt,
        messages=messages,
        max_tokens=max(1, max_tokens if max_tokens is not None else limit),
        # The OpenAI API samples at temperature 1 unless told otherwise.
        temperature=1.0 if temperature is None else temperature,
        top_p=1.0 if top_p is None else top_p,
        top_k=top_k or 0,
        seed=seed,
        stop=_stops(body.get("stop")),
    )
    return Parsed(request, max_tokens, bool(stream), include_usage, model, logprobs, echo, prompt_ids)


def _opt_int(body: Mapping[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadRequest(f"{name} must be an integer, got {_show(value)}", param=name)
    return value


def _opt_number(body: Mapping[str, Any], name: str, lo: float, hi: float) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    # (An int is finite; math.isfinite would overflow on a huge one.)
    if (not isinstance(value, (int, float)) or isinstance(value, bool)
            or isinstance(value, float) and not math.isfinite(value)):
        raise BadRequest(f"{name} must be a number, got {_show(value)}", param=name)
    if not lo <= value <= hi:
        raise BadRequest(f"{name} must be between {lo:g} and {hi:g}, got {_show(value)}", param=name)
    return float(value)


def _stops(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if (not isinstance(value, list) or len(value) > 4
            or not all(isinstance(s, str) and s for s in value)):
        raise BadRequest("stop must be a non-empty string or a list of up to 4 of them", param="stop")
    for s in value:
        _check_text(s, "stop")
    return tuple(value)


def _check_text(text: str, where: str) -> None:
    """Refuse text that is not Unicode a tokenizer can take: JSON's ``\\ud800``
    escapes decode to lone surrogates, which cannot be encoded as UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise BadRequest(f"{where} holds {_show(exc.object[exc.start:exc.end])}, a lone UTF-16 "
                         f"surrogate, which is not text; send valid Unicode", param=where) from None


def _name(name: str, width: int = 40) -> str:
    """A field name for an error message: quoted, cut short, with no lone surrogate."""
    return repr(name if len(name) <= width else name[:width] + "...")


def _safe(text: str, width: int = 40) -> str:
    """Text that encodes as UTF-8 (the JSON answer must), cut short."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= width else text[:width] + "..."


def _show(value: Any, width: int = 40) -> str:
    """``value`` as JSON for an error message, cut short: messages stay one short line."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    return text if len(text) <= width else text[:width] + "..."
