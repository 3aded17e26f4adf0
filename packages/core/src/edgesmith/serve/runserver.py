"""Running the server for ``edgesmith serve``: bind, load, serve, shut down cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from typing import Any

log = logging.getLogger("edgesmith.serve")


def run_server(artifact: str, backend: str | None, options: tuple[str, ...], threads: int | None,
               host: str, port: int, api_key: str | None, model_name: str | None, max_queue: int,
               max_tokens_limit: int, max_body_bytes: int, max_logprob_tokens: int = 1024) -> None:
    from pathlib import Path

    from .. import api
    from ..errors import UserError
    from ..util import parse_options

    try:
        import uvicorn

        from .app import create_app
    except ImportError as exc:
        raise UserError(f"edgesmith serve needs {exc.name or 'starlette and uvicorn'}; "
                        f"pip install 'edgesmith[serve]'") from None
    _ensure_logging()
    if api_key is not None and not api_key.strip():
        raise UserError("--api-key is empty; give a non-empty key or leave the option out")
    sock = _bind(host, port)
    try:
        runner = api.load(artifact, backend=backend, options=parse_options(options), threads=threads)
    except BaseException:
        sock.close()
        raise
    try:
        app = create_app(runner, model_id=model_name or Path(artifact).resolve().name, api_key=api_key,
                         max_queue=max_queue, max_tokens_limit=max_tokens_limit,
                         max_body_bytes=max_body_bytes, max_logprob_tokens=max_logprob_tokens)
        bound_host, bound_port = sock.getsockname()[:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        if not _loopback(host) and not api_key:
            log.warning("serving on %s without --api-key: anyone who can reach this address can use "
                        "the model", host)
        log.info("serving %s (backend %s) at http://%s:%d/v1 — Ctrl-C to stop", artifact,
                 runner.backend, shown, bound_port)
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                                timeout_graceful_shutdown=GRACE_S, server_header=False)
        with _quiet_signals():
            _server_class(uvicorn, app.state.engine)(config).run(sockets=[sock])
        log.info("stopped")
    finally:
        sock.close()
        runner.close()


def _bind(host: str, port: int) -> socket.socket:
    """Bind before loading the model, so a taken port fails fast and port 0 works."""
    from ..errors import UserError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UserError(f"cannot listen on {host}:{port} ({exc.strerror}); choose another --port or "
                        f"--host") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


#: Seconds a running request may take to finish once shutdown starts.
GRACE_S = 5


def _server_class(uvicorn: Any, engine: Any) -> Any:
    class Server(uvicorn.Server):  # type: ignore[misc, name-defined]
        """Shuts down in an order that answers every client.

        Waiting requests get 503 at once; the running one has until just
        before uvicorn's grace period ends, then is ended with an error
        event, so uvicorn never has to cancel a request half-way.
        """

        async def shutdown(self, sockets: Any = None) -> None:
            engine.drain()
            asyncio.get_running_loop().call_later(max(0.0, GRACE_S - 1), engine.abort_running)
            await super().shutdown(sockets=sockets)

    return Server


@contextlib.contextmanager
def _quiet_signals() -> Iterator[None]:
    """Let Ctrl-C and SIGTERM end the server with exit status 0.

    uvicorn shuts down gracefully on these signals and then raises the signal
    again for the handler it found; a handler that only takes note lets the
    command return normally and close the model.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    wanted = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, lambda signum, frame: None) for sig in wanted}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _ensure_logging() -> None:
    # Under `edgesmith serve` the main group has set this up; run alone, we do.
    root = logging.getLogger("edgesmith")
    if root.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("edgesmith: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    root.propagate = False
