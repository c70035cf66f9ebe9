"""What the notifications app publishes: the key of a user's streams and the event shapes.

Every event is JSON-safe primitives (it crosses Redis) and carries the user's unread count
as of its publication, so a stream never has to query the database to update the badge.
"""

#: The fields of a notification as clients receive them (SSE data, export lines).
NOTIFICATION_FIELDS = ("id", "title", "body", "url", "level", "created_at", "read")


def user_key(user_id: int) -> str:
    """The hub key (and channel-layer group) of one user's notification streams."""
    return f"notifications.user.{int(user_id)}"


def created_event(notification: dict, unread: int) -> dict:
    """A new notification, with the recipient's unread count after it."""
    return {"kind": "created", **notification, "unread": unread}


def read_event(*, ids: list[int] | None, up_to: int | None, unread: int) -> dict:
    """Notifications marked read: these ``ids``, or all up to ``up_to`` (mark all read)."""
    return {"kind": "read", "ids": ids, "up_to": up_to, "unread": unread}


def session_ended_event(session_digest: str) -> dict:
    """The browser session with this digest logged out: its streams must end."""
    return {"kind": "session.ended", "session": session_digest}


def session_digest(session_key: str) -> str:
    """A stand-in for a session key in events: they cross Redis; the key must not."""
    import hashlib

    return hashlib.sha256(f"streamsite-session:{session_key}".encode()).hexdigest()[:32]
