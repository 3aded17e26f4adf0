"""`edgesmith serve` over real backends' artifacts, driven by the official `openai` client.

Each case makes an artifact from a tiny checkpoint through edgesmith's own API
and serves it with ``--backend NAME``: completions and chat, each plain and
streaming, must work (chat is an xfail naming the reason when the backend
finds no chat template for the artifact). Backends that are not installed, or
not usable here, are skipped, so this runs wherever some of them are present.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("starlette")
openai = pytest.importorskip("openai")

from edgesmith import api  # noqa: E402
from edgesmith.plugins import reset_manager  # noqa: E402

from ..core.test_serve_live import ServerProcess, serve_env  # noqa: E402

KEY = "backend-key"
# Widths that no builder mistakes for the vocabulary (Olive's ONNX builder would
# take a 512-wide MLP for the LM head) and that K-quants can still block.
TINY = {"intermediate_size": 768}

#: backend that serves → (format to make, backend that makes it from hf, extra `serve` arguments).
CASES = {
    "llamacpp": ("gguf", "llamacpp", []),
    "openvino": ("openvino", "openvino", []),
    "mlx": ("mlx", "mlx", []),
    "olive": ("onnx", "olive", []),
}
# Not qnn: its runner generates text only from graphs with a logits output; the
# ONNX Runtime GenAI bundle Olive makes is refused (with a clear 400) today.


def _usable(name: str) -> str | None:
    rec = {r.name: r for r in api.backends()}.get(name)
    if rec is None:
        return f"backend {name} is not installed"
    if not rec.usable:
        return f"backend {name} is {rec.status}: {rec.reason}"
    return None


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory, tiny_model) -> dict[tuple[str, str], Path]:
    """Artifacts made so far, keyed by (format, maker); shared between cases."""
    reset_manager()
    return {}


@pytest.mark.parametrize("server_backend", sorted(CASES))
def test_openai_client_against_backend(server_backend, artifacts, tiny_model, tmp_path_factory):
    fmt, maker, extra = CASES[server_backend]
    for name in {server_backend, maker}:
        reason = _usable(name)
        if reason:
            pytest.skip(reason)
    if (fmt, maker) not in artifacts:
        out = tmp_path_factory.mktemp(f"serve-{maker}") / fmt
        artifacts[(fmt, maker)] = api.convert(tiny_model("llama", **TINY), fmt, out, backend=maker).path
    art = artifacts[(fmt, maker)]

    srv = ServerProcess([str(art), "--backend", server_backend, "--api-key", KEY, "--max-tokens-limit", "32",
                         *extra], serve_env(), start_s=600)
    try:
        client = openai.OpenAI(base_url=srv.url + "/v1", api_key=KEY, max_retries=0, timeout=300)
        assert [m.id for m in client.models.list().data] == [art.name]
        done = client.completions.create(model="m", prompt="Once upon a time", max_tokens=5, temperature=0)
        assert 1 <= done.usage.completion_tokens <= 5 and done.model_extra["timings"]["total_s"] > 0
        pieces = list(client.completions.create(model="m", prompt="Once upon a time", max_tokens=5,
                                                temperature=0, stream=True))
        assert "".join(c.choices[0].text for c in pieces) == done.choices[0].text
        messages = [{"role": "user", "content": "Say hello."}]
        try:
            whole = client.chat.completions.create(model="m", messages=messages, max_tokens=6, temperature=0)
        except openai.BadRequestError as exc:
            if "no chat template" in str(exc):
                pytest.xfail(f"{server_backend}: {exc.message}")
            raise
        assert 1 <= whole.usage.completion_tokens <= 6 and whole.usage.prompt_tokens > 0
        chunks = list(client.chat.completions.create(model="m", messages=messages, max_tokens=6,
                                                     temperature=0, stream=True))
        streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert streamed == whole.choices[0].message.content
        assert chunks[-1].choices[0].finish_reason in ("stop", "length")
        assert srv.proc.poll() is None
    finally:
        code = srv.stop()
    assert code == 0, "".join(srv.lines[-20:])
