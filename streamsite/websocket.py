"""Let a WebSocket consumer write frames with the server's own ``send``.

Channels' session middleware wraps ``send`` to save the session and set cookies on HTTP
responses; for ``websocket.send`` it only passes the message on, at a cost paid for every
frame of every socket (~7 % of a busy chat server's time, measured with py-spy in
bench/results/*-chat-profiles/). The chat outbox writes room frames with the unwrapped
``send`` that this middleware, outermost, leaves in the scope. Everything else (accept,
close) still goes through the wrapped one.
"""

SCOPE_KEY = "streamsite.server_send"


class ServerSendMiddleware:
    """Put the server's ``send`` in the scope (outermost, around Channels' middleware)."""

    def __init__(self, inner) -> None:
        self.inner = inner

    async def __call__(self, scope, receive, send):
        return await self.inner({**scope, SCOPE_KEY: send}, receive, send)


def server_send(scope: dict, fallback):
    """The server's ``send`` for frames, or ``fallback`` when the middleware is absent."""
    return scope.get(SCOPE_KEY, fallback)
