"""The ``serve`` click command. Importing this module costs only click; the
server itself (``runserver``, starlette, uvicorn) is imported when the command
runs, so the rest of the CLI starts fast and works without the ``serve`` extra."""

from __future__ import annotations

import click

from ..cliutil import backend_options, threads_option


@click.command()
@click.argument("artifact", type=click.Path())
@backend_options
@threads_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; anything but loopback exposes the model to the network.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535),
              help="Port to bind (0: any free port, printed at start).")
@click.option("--api-key", envvar="EDGESMITH_API_KEY", metavar="KEY",
              help="Require 'Authorization: Bearer KEY' on every request (or set EDGESMITH_API_KEY).")
@click.option("--model-name", metavar="NAME", help="Model id in /v1/models (default: the artifact's name).")
@click.option("--max-queue", default=16, show_default=True, type=click.IntRange(min=0),
              help="Requests that may wait behind the running one; more get 503 with Retry-After.")
@click.option("--max-tokens-limit", default=2048, show_default=True, type=click.IntRange(min=1),
              help="Largest max_tokens a request may ask for.")
@click.option("--max-body-bytes", default=1 << 20, show_default=True, type=click.IntRange(min=1024),
              help="Largest request body accepted (413 beyond).")
@click.option("--max-logprob-tokens", default=1024, show_default=True, type=click.IntRange(min=2),
              help="Most prompt + completion tokens a logprobs or echo request may have scored (each "
                   "costs one row of vocabulary-size floats).")
def serve(artifact: str, backend: str | None, options: tuple[str, ...], threads: int | None, host: str,
          port: int, api_key: str | None, model_name: str | None, max_queue: int,
          max_tokens_limit: int, max_body_bytes: int, max_logprob_tokens: int) -> None:
    """Serve ARTIFACT with an OpenAI-compatible API (/v1/chat/completions, /v1/completions)."""
    from .runserver import run_server

    run_server(artifact, backend, options, threads, host, port, api_key, model_name, max_queue,
               max_tokens_limit, max_body_bytes, max_logprob_tokens)
