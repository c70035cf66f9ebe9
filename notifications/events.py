"""What the notifications app publishes: the key of a user's streams and the event shapes.

Every event is JSON-safe primitives (it crosses Redis) and carries the user's unread count
as of its publication (or, for an announcement to everyone, says how it changes), so a
stream never has to query the database to update the badge.
"""

#: The fields of a notification as clients receive them (SSE data, export lines).
NOTIFICATION_FIELDS = ("id", "title", "body", "url", "level", "created_at", "read")


def user_key(user_id: int) -> str:
    """The hub key (and channel-layer group) of one user's notification streams."""
    return f"notifications.user.{int(user_id)}"


#: The hub key every notification stream also subscribes to: announcements for everyone.
ANNOUNCEMENTS_KEY = "notifications.announcements"


def created_event(notification: dict, unread: int | None, previous: int = 0) -> dict:
    """A new notification, with the recipient's unread count after it.

    ``unread`` counts the user's own unread notifications. It is None for an announcement:
    that goes to everyone, and each stream adds it to the unread announcements it counts
    (an announcement is unread for everybody when sent).

    ``previous`` is the id before it in the recipient's feed (for an announcement, the
    announcement before it): a stream that has not sent that one reads the feed first, so
    it never sends an id past one still on its way (``notifications.streams``).
    """
    return {"kind": "created", **notification, "unread": unread, "previous": previous}


def read_event(
    *, ids: list[int] | None, up_to: int | None, unread: int, announcements=None
) -> dict:
    """Notifications marked read: these ``ids``, or all up to ``up_to`` (mark all read).

    ``unread`` counts the user's own unread notifications. ``announcements`` (a
    ``selectors.UnreadParts``) is given when the change touched announcements: the event
    then also carries their unread count and the id it was counted up to.
    """
    event = {"kind": "read", "ids": ids, "up_to": up_to, "unread": unread}
    if announcements is not None:
        event["announcements_unread"] = announcements.announcements
        event["announcements_counted_up_to"] = announcements.counted_up_to
    return event


def session_ended_event(session_digest: str) -> dict:
    """The browser session with this digest logged out: its streams must end."""
    return {"kind": "session.ended", "session": session_digest}


def session_digest(session_key: str) -> str:
    """A stand-in for a session key in events: they cross Redis; the key must not."""
    import hashlib

    return hashlib.sha256(f"streamsite-session:{session_key}".encode()).hexdigest()[:32]
