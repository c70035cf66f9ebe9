"""Hand the server's own ``send`` to the code that writes streams and sockets' hot paths.

Middleware wraps ``send``: Channels' session middleware (to save the session and set
cookies on HTTP responses), ours for the request id header. For a WebSocket frame or a
streamed response's chunk those wrappers only pass the message on, at a cost paid for every
frame of every socket (~7 % of a busy chat server's time, measured with py-spy in
bench/results/*-chat-profiles/) and every event of every stream. This middleware,
outermost, puts the server's ``send`` in the scope: the chat outbox writes room frames with
it, and both the chat and the notification streams recognise uvicorn's connection behind
it to write pre-built bytes straight to it (``streamsite.websocket.FrameWriter``,
``streamsite.http_chunks.ChunkWriter``). Everything else (response starts, accept, close)
still goes through the wrapped ``send``.

Under daphne (``runserver``) a socket's ``send`` also translates close codes daphne cannot
send (``streamsite.websocket.DaphneCloseCodes``).
"""

from __future__ import annotations

from contextvars import ContextVar

from streamsite.websocket import DaphneCloseCodes, is_daphne_send

#: Where a socket's consumer finds the server's ``send``: its scope.
SCOPE_KEY = "streamsite.server_send"

#: Where an HTTP view finds it: a context variable of the request's task (Django runs the
#: view in a task of its own, which copies the context). Not a scope key: a copy of the
#: scope with one key more is a dict of its own that every open stream kept, 0.7 KB each
#: (docs/benchmarks.md, memory per idle stream).
http_server_send: ContextVar = ContextVar("http_server_send", default=None)


class ServerSendMiddleware:
    """Hand on the server's ``send``: in ``http_server_send`` for HTTP requests, in the
    scope for WebSockets (outermost in ``asgi.py``)."""

    def __init__(self, inner) -> None:
        self.inner = inner

    async def __call__(self, scope, receive, send):
        kind = scope["type"]
        if kind == "http":
            token = http_server_send.set(send)
            try:
                return await self.inner(scope, receive, send)
            finally:
                http_server_send.reset(token)
        if kind == "websocket":
            if is_daphne_send(send):
                send = DaphneCloseCodes(send)
            return await self.inner({**scope, SCOPE_KEY: send}, receive, send)
        return await self.inner(scope, receive, send)


def server_send(scope: dict, fallback):
    """The server's ``send`` for frames, or ``fallback`` when the middleware is absent."""
    return scope.get(SCOPE_KEY, fallback)
