"""The chat app's WebSocket routes (its consumers come with issue #4)."""

websocket_urlpatterns: list = []
