from django.apps import AppConfig


class ChatConfig(AppConfig):
    """Chat rooms over WebSockets, through Channels consumers."""

    name = "chat"

    def ready(self):
        from chat.unread_watch import ChatUnreadWatch
        from notifications.watches import watch_register

        # Every notification stream keeps the user's unread chat counts live.
        watch_register(ChatUnreadWatch)
