"""Reads of notifications: pages, the badge, resumption and export.

The async generators stream rows from the ORM in chunks (``streamsite.streaming.orm``, an
``aiterator()`` that closes its cursor); callers consume them under ``contextlib.aclosing``
so an abandoned stream closes its cursor at once, not at garbage collection.
"""

from collections.abc import AsyncIterator
from contextlib import aclosing

from django.db.models import Count, QuerySet

from notifications.models import Notification
from streamsite.streaming.orm import astream


def notifications_of(user_id: int) -> QuerySet[Notification]:
    """A user's notifications, newest first."""
    return Notification.objects.filter(recipient_id=user_id).order_by("-id")


def unread_count(user_id: int) -> int:
    return Notification.objects.filter(recipient_id=user_id, read_at__isnull=True).count()


async def aunread_count(user_id: int) -> int:
    return await Notification.objects.filter(recipient_id=user_id, read_at__isnull=True).acount()


def unread_counts(user_ids: list[int]) -> dict[int, int]:
    """Unread counts of many users in one query (users with none are absent)."""
    rows = (
        Notification.objects.filter(recipient_id__in=user_ids, read_at__isnull=True)
        .values("recipient_id")
        .annotate(unread=Count("id"))
        .values_list("recipient_id", "unread")
    )
    return dict(rows)


def latest_notifications(user_id: int, limit: int = 5) -> list[Notification]:
    """The newest few, for the bell's drop-down."""
    return list(notifications_of(user_id)[:limit])


def latest_notification_id(user_id: int) -> int:
    """The highest id the user has, 0 if none: where a freshly rendered page resumes."""
    latest = notifications_of(user_id).values_list("id", flat=True).first()
    return latest or 0


async def alatest_notification_id(user_id: int) -> int:
    latest = await notifications_of(user_id).values_list("id", flat=True).afirst()
    return latest or 0


async def notifications_after(
    user_id: int, after_id: int, *, chunk_size: int = 500
) -> AsyncIterator[Notification]:
    """Yield the user's notifications with an id above ``after_id``, oldest first."""
    rows = astream(
        Notification.objects.filter(recipient_id=user_id, id__gt=after_id).order_by("id"),
        chunk_size=chunk_size,
    )
    async with aclosing(rows):
        async for notification in rows:
            yield notification


async def notifications_for_export(user_id: int, *, chunk_size: int = 2000) -> AsyncIterator[dict]:
    """Yield every notification of the user as its event payload, oldest first.

    ``values()`` rows, not model instances: the export's memory stays flat and each row
    costs a dict, not an object.
    """
    rows = astream(
        Notification.objects.filter(recipient_id=user_id)
        .order_by("id")
        .values("id", "title", "body", "url", "level", "created_at", "read_at"),
        chunk_size=chunk_size,
    )
    async with aclosing(rows):
        async for row in rows:
            yield row
