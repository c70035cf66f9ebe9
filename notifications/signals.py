"""Signal receivers of the notifications app."""

from notifications import counters, services


def end_streams_on_logout(sender, request, user, **kwargs) -> None:
    """A browser that logs out stops receiving its user's notifications at once."""
    session_key = getattr(getattr(request, "session", None), "session_key", None)
    if user is not None and session_key:
        services.notification_streams_end_for_session(user_id=user.pk, session_key=session_key)


def give_new_users_a_counter(sender, instance, created, raw=False, **kwargs) -> None:
    """A new user starts with nothing unread: earlier announcements are not news to them."""
    if created and not raw:
        counters.counter_create(instance.pk)
