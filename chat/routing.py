"""The chat app's WebSocket routes."""

from django.urls import path

from chat.consumers import RoomConsumer

websocket_urlpatterns = [
    path("ws/chat/<slug:slug>/", RoomConsumer.as_asgi()),
]
