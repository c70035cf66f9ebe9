"""Site-wide WebSocket consumers."""

from channels.generic.websocket import AsyncWebsocketConsumer

from streamsite.observability.logs import accept_headers

CLOSE_NOT_FOUND = 4404


class UnknownPathConsumer(AsyncWebsocketConsumer):
    """Close a socket opened on a path no app serves, with code 4404.

    Accepting first lets the client see the code: a refusal at the handshake reaches
    browsers only as close code 1006, which they cannot tell from a network failure.
    """

    async def connect(self):
        await self.accept(headers=accept_headers(self.scope))
        await self.close(code=CLOSE_NOT_FOUND)
