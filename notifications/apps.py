from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    """Live notifications pushed to every open page over Server-Sent Events."""

    name = "notifications"

    def ready(self):
        from django.conf import settings
        from django.contrib.auth.signals import user_logged_out
        from django.db.models.signals import post_save

        from notifications.signals import end_streams_on_logout, give_new_users_a_counter

        user_logged_out.connect(end_streams_on_logout, dispatch_uid="notifications-logout")
        post_save.connect(
            give_new_users_a_counter,
            sender=settings.AUTH_USER_MODEL,
            dispatch_uid="notifications-new-user-counter",
        )
