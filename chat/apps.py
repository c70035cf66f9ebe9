from django.apps import AppConfig


class ChatConfig(AppConfig):
    """Chat rooms over WebSockets, through Channels consumers."""

    name = "chat"
