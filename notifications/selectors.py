"""Reads of notifications: pages, the badge, resumption and export.

Async readers for streams run on the shared thread pool and release their connection
(``streamsite.streaming.db.db_call``). The export streams rows from the ORM in chunks
(``streamsite.streaming.orm.astream``, an ``aiterator()`` that closes its cursor). Callers
consume the async generators under ``contextlib.aclosing``.
"""

from collections.abc import AsyncIterator
from contextlib import aclosing
from functools import partial

from django.db.models import QuerySet

from notifications.models import Notification, UnreadCounter
from streamsite.streaming.db import db_call, keyset_pages
from streamsite.streaming.orm import astream


def notifications_of(user_id: int) -> QuerySet[Notification]:
    """A user's notifications, newest first."""
    return Notification.objects.filter(recipient_id=user_id).order_by("-id")


def unread_count(user_id: int) -> int:
    """The user's unread count: their counter row, one lookup whatever their backlog."""
    unread = UnreadCounter.objects.filter(user_id=user_id).values_list("unread", flat=True)
    return unread.first() or 0


async def aunread_count(user_id: int) -> int:
    """``unread_count`` for streams: on the shared pool, connection released (see db_call)."""
    return await db_call(unread_count, user_id)


def unread_counts(user_ids: list[int]) -> dict[int, int]:
    """Unread counts of many users in one query (users with none may be absent)."""
    return dict(UnreadCounter.objects.filter(user_id__in=user_ids).values_list("user_id", "unread"))


def latest_notifications(user_id: int, limit: int = 5) -> list[Notification]:
    """The newest few, for the bell's drop-down."""
    return list(notifications_of(user_id)[:limit])


def latest_notification_id(user_id: int) -> int:
    """The highest id the user has, 0 if none: where a freshly rendered page resumes."""
    latest = notifications_of(user_id).values_list("id", flat=True).first()
    return latest or 0


async def alatest_notification_id(user_id: int) -> int:
    """``latest_notification_id`` for streams (see db_call)."""
    return await db_call(latest_notification_id, user_id)


def notifications_page_after(user_id: int, after_id: int, limit: int) -> list[Notification]:
    """Up to ``limit`` of the user's notifications with an id above ``after_id``, oldest first."""
    return list(
        Notification.objects.filter(recipient_id=user_id, id__gt=after_id).order_by("id")[:limit]
    )


async def notifications_after(
    user_id: int, after_id: int, *, page_size: int = 500
) -> AsyncIterator[Notification]:
    """Yield the user's notifications with an id above ``after_id``, oldest first.

    Page by page (keyset on ``(recipient, id)``), each page one query on the shared pool
    with its connection released: unlike a cursor (``aiterator()``), nothing is held
    between pages, so a stream pins neither a thread nor a connection while it replays to
    a slow client, and there is no cursor to leak if the client leaves mid-way.
    """
    pages = keyset_pages(partial(notifications_page_after, user_id), after_id, page_size=page_size)
    async with aclosing(pages):
        async for notification in pages:
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
