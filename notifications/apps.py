from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    """Live notifications pushed to every open page over Server-Sent Events."""

    name = "notifications"
