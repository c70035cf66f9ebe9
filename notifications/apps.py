from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    """Live notifications pushed to every open page over Server-Sent Events."""

    name = "notifications"

    def ready(self):
        from django.contrib.auth.signals import user_logged_out

        from notifications.signals import end_streams_on_logout

        user_logged_out.connect(end_streams_on_logout, dispatch_uid="notifications-logout")
