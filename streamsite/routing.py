"""Every WebSocket route of the site, in one list for ``asgi.py``."""

from django.urls import re_path

from chat.routing import websocket_urlpatterns as chat_websocket_urlpatterns
from streamsite.consumers import UnknownPathConsumer

websocket_urlpatterns = [
    *chat_websocket_urlpatterns,
    # Last: a path no app claims is closed with 4404, not left to raise in the router.
    re_path(r"", UnknownPathConsumer.as_asgi()),
]
