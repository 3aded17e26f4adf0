"""``edgesmith serve``: an OpenAI-compatible HTTP server over any backend's runner.

- :mod:`.schema` turns request bodies into :class:`~edgesmith.types.RunRequest`
  or a clear 400;
- :mod:`.queue` owns the single model instance: one worker thread, a bounded
  first-in-first-out queue, cancellation;
- :mod:`.app` is the ASGI application (Starlette);
- :mod:`.cli` is the click command (imports only click until it runs).
"""
