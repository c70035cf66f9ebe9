"""Reads of notifications: pages, the badge, resumption and export.

A user's feed is their own notifications plus the announcements (rows with no recipient,
stored once for everyone). Both share one id sequence, so "everything after id N" is one
cursor over the feed. An announcement's read state is per user: read when its id is at or
below the user's watermark (``UnreadCounter.announcements_read_up_to``) or when an
``AnnouncementRead`` row says so; selectors set ``user_read`` on what they load.

Reads that could meet a long history go through an index each: own rows by
``(recipient, id)``, announcements by the partial index on ``id``. Where both are needed in
id order (replay, export) the two ordered reads are merged here, instead of one ``OR``
query that PostgreSQL would sort as a whole.

Async readers for streams run on the shared thread pool and release their connection
(``streamsite.streaming.db.db_call``). The export streams rows from the ORM in chunks
(``streamsite.streaming.orm.astream``, an ``aiterator()`` that closes its cursor). Callers
consume the async generators under ``contextlib.aclosing``.
"""

import heapq
from collections.abc import AsyncIterator, Iterable
from contextlib import aclosing
from functools import partial
from typing import NamedTuple

from django.db import connection
from django.db.models import (
    BooleanField,
    Case,
    Exists,
    ExpressionWrapper,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.db.models.functions import Coalesce

from notifications.models import AnnouncementRead, Notification, UnreadCounter
from streamsite.pg_arrays import int_array
from streamsite.prebuilt_query import PrebuiltQuery
from streamsite.streaming.db import db_call, keyset_pages
from streamsite.streaming.orm import astream


def _watermark(user_id: int):
    """SQL: the id up to which every announcement is read for the user (0 if none)."""
    return Coalesce(
        Subquery(
            UnreadCounter.objects.filter(user_id=user_id).values("announcements_read_up_to")[:1]
        ),
        Value(0),
    )


def _read_one_by_one(user_id: int):
    return AnnouncementRead.objects.filter(user_id=user_id, notification_id=OuterRef("pk"))


def notifications_of(user_id: int) -> QuerySet[Notification]:
    """A user's feed (own notifications and announcements), newest first, with ``user_read``.

    For the paginated list page; streams and exports read the two parts apart (above).
    """
    return (
        Notification.objects.filter(Q(recipient_id=user_id) | Q(recipient__isnull=True))
        .annotate(
            user_read=Case(
                When(recipient__isnull=False, then=Q(read_at__isnull=False)),
                When(id__lte=_watermark(user_id), then=Value(True)),
                default=Exists(_read_one_by_one(user_id)),
                output_field=BooleanField(),
            )
        )
        .order_by("-id")
    )


# A stream's first reads, built once per process (``streamsite.prebuilt_query``): each
# stream runs them as it connects, and building their querysets cost more than running them.
_COUNTER = PrebuiltQuery(
    lambda user_id: UnreadCounter.objects.filter(user_id=user_id).values_list(
        "unread", "announcements_read_up_to"
    )[:1]
)
_LATEST_OWN = PrebuiltQuery(
    lambda user_id: (
        Notification.objects.filter(recipient_id=user_id).order_by("-id").values_list("id")[:1]
    )
)
_LATEST_ANNOUNCEMENT = PrebuiltQuery(
    lambda: (
        Notification.objects.filter(recipient__isnull=True).order_by("-id").values_list("id")[:1]
    )
)


def _unread_announcements_queryset(user_id: int, watermark: int, up_to: int | None = None):
    announcements = Notification.objects.filter(recipient__isnull=True, id__gt=watermark)
    if up_to is not None:
        announcements = announcements.filter(id__lte=up_to)
    return announcements.exclude(Exists(_read_one_by_one(user_id))).values_list("id")


_UNREAD_ANNOUNCEMENTS = PrebuiltQuery(_unread_announcements_queryset, count=True)
_UNREAD_ANNOUNCEMENTS_UP_TO = PrebuiltQuery(_unread_announcements_queryset, count=True)


def counter_of(user_id: int) -> tuple[int, int]:
    """The user's (own unread, announcement watermark); (0, 0) without a counter row."""
    rows = _COUNTER.rows(user_id=user_id)
    return rows[0] if rows else (0, 0)


def unread_announcements(user_id: int, watermark: int, *, up_to: int | None = None) -> int:
    """Announcements above the watermark (up to ``up_to``) the user has not read one by one.

    O(announcements since the user last marked all read), never O(their own backlog):
    announcements are few by nature, and nothing per user is written when one is sent.
    """
    if up_to is None:
        return _UNREAD_ANNOUNCEMENTS.count(user_id=user_id, watermark=watermark)
    return _UNREAD_ANNOUNCEMENTS_UP_TO.count(user_id=user_id, watermark=watermark, up_to=up_to)


class UnreadParts(NamedTuple):
    """A user's unread count in the two parts a stream keeps apart: events for the user
    carry ``own``, announcements change ``announcements``. ``counted_up_to`` is the id up to
    which announcements were counted: later ones are news on top of it."""

    own: int
    announcements: int
    counted_up_to: int


def unread_parts(user_id: int, *, up_to: int | None = None) -> UnreadParts:
    """The user's unread notifications and unread announcements (those up to ``up_to``, or
    all there are)."""
    own, watermark = counter_of(user_id)
    if up_to is None:
        up_to = _latest_id(_LATEST_ANNOUNCEMENT.rows())
    return UnreadParts(own, unread_announcements(user_id, watermark, up_to=up_to), up_to)


async def aunread_parts(user_id: int, *, up_to: int | None = None) -> UnreadParts:
    """``unread_parts`` for streams (see db_call)."""
    return await db_call(partial(unread_parts, user_id, up_to=up_to))


def unread_count(user_id: int) -> int:
    """The badge: the user's counter plus their unread announcements; no row of the user's
    own backlog is counted."""
    own, watermark = counter_of(user_id)
    return own + unread_announcements(user_id, watermark)


async def aunread_count(user_id: int) -> int:
    """``unread_count`` for streams: on the shared pool, connection released (see db_call)."""
    return await db_call(unread_count, user_id)


def with_read_state(
    user_id: int, rows: list[Notification], *, watermark: int | None = None
) -> list[Notification]:
    """Set ``user_read`` on the announcements among ``rows`` (at most two queries; one
    when the caller knows the user's watermark)."""
    announcements = [row for row in rows if row.recipient_id is None]
    if not announcements:
        return rows
    if watermark is None:
        _own, watermark = counter_of(user_id)
    above = [row.pk for row in announcements if row.pk > watermark]
    read = set(
        AnnouncementRead.objects.filter(user_id=user_id, notification_id__in=above).values_list(
            "notification_id", flat=True
        )
        if above
        else ()
    )
    for row in announcements:
        row.user_read = row.pk <= watermark or row.pk in read
    return rows


def _merged(own: Iterable[Notification], announcements: Iterable[Notification], *, newest_first):
    return heapq.merge(own, announcements, key=lambda row: row.pk, reverse=newest_first)


def latest_notifications(
    user_id: int, limit: int = 5, *, watermark: int | None = None
) -> list[Notification]:
    """The newest few of the feed, for the bell's drop-down (two indexed reads, merged)."""
    own = Notification.objects.filter(recipient_id=user_id).order_by("-id")[:limit]
    announcements = Notification.objects.filter(recipient__isnull=True).order_by("-id")[:limit]
    rows = list(_merged(own, announcements, newest_first=True))[:limit]
    return with_read_state(user_id, rows, watermark=watermark)


def feed_size(user_id: int, *, up_to: int) -> int:
    """How many notifications of the user's feed have an id up to ``up_to`` (own and
    announcements): an export's total. Two indexed counts."""
    own = Notification.objects.filter(recipient_id=user_id, id__lte=up_to).count()
    return own + Notification.objects.filter(recipient__isnull=True, id__lte=up_to).count()


def latest_notification_id(user_id: int) -> int:
    """The highest id of the user's feed, 0 if none: where a freshly rendered page resumes."""
    own = _latest_id(_LATEST_OWN.rows(user_id=user_id))
    return max(own, _latest_id(_LATEST_ANNOUNCEMENT.rows()))


def _latest_id(rows: list[tuple]) -> int:
    return rows[0][0] if rows else 0


async def alatest_notification_id(user_id: int) -> int:
    """``latest_notification_id`` for streams (see db_call)."""
    return await db_call(latest_notification_id, user_id)


def feed_positions_before(new_ids: dict[int, int]) -> dict[int, int]:
    """For each user's new notification (``{user_id: new_id}``, one statement's inserts),
    the newest id of their feed below it: the event's ``previous`` (docs/architecture.md,
    "Resume positions in commit order").

    Read after the insert, inside its transaction: the user's counter lock and the
    announcements' table lock make every lower id of the feed committed by then. One
    index probe per user (``(recipient, id)``) and one for the announcements (below the
    statement's lowest new id: no announcement can fall between ids one insert drew), so
    the cost does not grow with anyone's history.
    """
    if not new_ids:
        return {}
    table = connection.ops.quote_name(Notification._meta.db_table)
    users = sorted(new_ids)
    ids = [new_ids[user] for user in users]
    if connection.vendor == "postgresql":
        rows = "unnest(%s::bigint[], %s::bigint[]) AS given (user_id, new_id)"
        params = [int_array(users), int_array(ids)]
    else:
        placeholders = ", ".join(["(%s, %s)"] * len(users))
        rows = (
            "(SELECT column1 AS user_id, column2 AS new_id "  # noqa: S608
            f"FROM (VALUES {placeholders})) AS given"
        )
        params = [value for pair in zip(users, ids, strict=True) for value in pair]
    sql = (
        f"SELECT given.user_id, (SELECT MAX(n.id) FROM {table} n "  # noqa: S608
        "WHERE n.recipient_id = given.user_id AND n.id < given.new_id) FROM " + rows
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        own = dict(cursor.fetchall())
    announced = announcement_before(min(ids))
    return {user: max(own.get(user) or 0, announced) for user in users}


def feed_positions_given(drawn: dict[int, tuple[int, int | None]]) -> dict[int, int]:
    """``feed_positions_before`` for ids drawn by the counters, which know (``{user_id:
    (new_id, their previous own id or None)}``) the user's own id before each: only the
    announcements are read (one probe), and the feed of a user whose counter did not know.
    """
    unknown = {user: new_id for user, (new_id, previous) in drawn.items() if previous is None}
    read = feed_positions_before(unknown) if unknown else {}
    announced = announcement_before(min(new_id for new_id, _ in drawn.values()))
    return {
        user: read[user] if previous is None else max(previous, announced)
        for user, (_new_id, previous) in drawn.items()
    }


def announcement_before(notification_id: int) -> int:
    """The newest announcement's id below ``notification_id`` (0 if none): an index probe."""
    below = Notification.objects.filter(recipient__isnull=True, id__lt=notification_id)
    return below.order_by("-id").values_list("id", flat=True).first() or 0


def notifications_page_after(user_id: int, after_id: int, limit: int) -> list[Notification]:
    """Up to ``limit`` of the user's feed with an id above ``after_id``, oldest first."""
    own = Notification.objects.filter(recipient_id=user_id, id__gt=after_id).order_by("id")
    announcements = Notification.objects.filter(recipient__isnull=True, id__gt=after_id)
    rows = _merged(own[:limit], announcements.order_by("id")[:limit], newest_first=False)
    return with_read_state(user_id, list(rows)[:limit])


async def notifications_after(
    user_id: int, after_id: int, *, page_size: int = 500
) -> AsyncIterator[Notification]:
    """Yield the user's feed with an id above ``after_id``, oldest first.

    Page by page (keyset on id), each page one query per part on the shared pool with its
    connection released: unlike a cursor (``aiterator()``), nothing is held between pages,
    so a stream pins neither a thread nor a connection while it replays to a slow client,
    and there is no cursor to leak if the client leaves mid-way.
    """
    pages = keyset_pages(partial(notifications_page_after, user_id), after_id, page_size=page_size)
    async with aclosing(pages):
        async for notification in pages:
            yield notification


EXPORT_FIELDS = ("id", "title", "body", "url", "level", "created_at", "read_at")


async def notifications_for_export(
    user_id: int, *, chunk_size: int = 2000, up_to: int | None = None
) -> AsyncIterator[dict]:
    """Yield the user's whole feed as dicts of ``EXPORT_FIELDS`` and ``read``, oldest first
    (with ``up_to``, the notifications with an id up to it: the feed when an export began).

    ``values()`` rows, not model instances: the export's memory stays flat and each row
    costs a dict, not an object. Own rows and announcements come from two cursors, each
    in its index's order, merged here. An announcement read through "mark all read" has
    no time of its own: ``read`` is true and ``read_at`` null.
    """
    bound = {} if up_to is None else {"id__lte": up_to}
    own = (
        Notification.objects.filter(recipient_id=user_id, **bound)
        .order_by("id")
        .values(*EXPORT_FIELDS, read=ExpressionWrapper(Q(read_at__isnull=False), BooleanField()))
    )
    announcements = (
        Notification.objects.filter(recipient__isnull=True, **bound)
        .order_by("id")
        .values(
            *EXPORT_FIELDS[:-1],
            user_read_at=Subquery(_read_one_by_one(user_id).values("read_at")[:1]),
            read=Case(
                When(id__lte=_watermark(user_id), then=Value(True)),
                default=Exists(_read_one_by_one(user_id)),
                output_field=BooleanField(),
            ),
        )
    )
    own_rows = astream(own, chunk_size=chunk_size)
    announcement_rows = astream(announcements, chunk_size=chunk_size)
    async with aclosing(own_rows), aclosing(announcement_rows):
        mine, theirs = await anext(own_rows, None), await anext(announcement_rows, None)
        while mine is not None or theirs is not None:
            if theirs is None or (mine is not None and mine["id"] < theirs["id"]):
                yield mine
                mine = await anext(own_rows, None)
            else:
                theirs["read_at"] = theirs.pop("user_read_at")
                yield theirs
                theirs = await anext(announcement_rows, None)
