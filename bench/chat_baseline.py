"""The chat baseline: the Channels tutorial's room consumer, served as its own ASGI app.

``ChatConsumer`` is django/channels ``docs/tutorial/part_3.rst``'s ``AsyncWebsocketConsumer``:
``group_add`` on connect, ``group_send`` of each received message to the room's group,
and a ``chat_message`` handler that sends it as JSON to its socket. Nothing is stored in
the database (the tutorial keeps no history). It speaks just enough of streamsite's
protocol (docs: notes/chat-protocol.md) for the same load generator to drive both: it
reads ``{"type": "message.send", "client_id", "body"}`` and sends
``{"type": "message", "message": {client_id, room, author, body}}``; a socket that is not
logged in is closed with 4401, as streamsite does.

The stack in front of it is the tutorial's: ``AllowedHostsOriginValidator`` then
``AuthMiddlewareStack`` (session cookie, user looked up in PostgreSQL; streamsite reads
both in one ``db_call``, ``streamsite.socket_auth``), HTTP to the same
Django application (``bench.urls``, for the harness' readiness probe). It is served by
uvicorn with the production command's flags (``bench.chat_servers``):

    uvicorn bench.chat_baseline:application --loop uvloop --http httptools --ws websockets ...
"""

import json
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")

# Django must be set up before anything imports models (auth middleware).
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.urls import re_path  # noqa: E402


class ChatConsumer(AsyncWebsocketConsumer):
    """The tutorial's consumer, with the user's name on each message."""

    async def connect(self):
        user = self.scope["user"]
        if not user.is_authenticated:
            await self.accept()
            await self.close(code=4401)
            return
        self.room_name = self.scope["url_route"]["kwargs"]["room_name"]
        self.room_group_name = f"chat_{self.room_name}"
        self.author = {"id": user.pk, "username": user.get_username()}
        await self.channel_layer.group_add(self.room_group_name, self.channel_name)
        await self.accept()

    async def disconnect(self, close_code):
        if hasattr(self, "room_group_name"):
            await self.channel_layer.group_discard(self.room_group_name, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None):
        data = json.loads(text_data)
        if data.get("type") != "message.send":
            return
        await self.channel_layer.group_send(
            self.room_group_name,
            {
                "type": "chat.message",
                "message": {
                    "client_id": data.get("client_id"),
                    "room": self.room_name,
                    "author": self.author,
                    "body": data.get("body", ""),
                },
            },
        )

    async def chat_message(self, event):
        await self.send(text_data=json.dumps({"type": "message", "message": event["message"]}))


websocket_urlpatterns = [
    re_path(r"^ws/chat/(?P<room_name>[-\w]+)/$", ChatConsumer.as_asgi()),
]

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)
