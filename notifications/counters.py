"""Per-user unread counters, kept in step with the notifications in the same transaction.

Why a counter row and not ``COUNT(*)``: every event carries the recipient's unread count,
and counting a user's unread rows on every publish costs O(their backlog). Real users
leave notifications unread for months, so a broadcast got slower forever (207 ms per
1,000 recipients at 300 unread each, measured). A row per user, incremented or
decremented by the statement that changes it, makes a publish O(recipients).

The counter row is also a per-user lock that orders commits: a service takes it (the
increment below) *before* inserting the user's notifications, so two transactions that
notify the same user run one after the other, and the second one's ids are drawn only
after the first committed. A user's ids are therefore in commit order, and a stream that
resumes "after id N" cannot skip a row that was still uncommitted when it read past N.
Locks are taken in user-id order, so batches for overlapping users cannot deadlock.

On PostgreSQL a publish draws its notifications' ids in the counter statement itself
(``counters_increment_drawing_ids``), under each user's row lock, and the counter keeps
the id drawn before: that is the event's ``previous``, returned with the count instead of
read from the feed (an index probe per recipient was 30 % of a broadcast's database time
on a long history, docs/benchmarks.md). Drawing ids before the insert means every
transaction that writes notifications takes the table's ``ROW EXCLUSIVE`` lock before any
counter row (``feed_lock_for_writing``): the lock an announcement waits on
(``services._lock_ids_in_commit_order``) is then held while the ids are drawn, and no
transaction can hold a counter while it queues for the table behind an announcement that
waits for it.

These functions run inside the caller's transaction and know nothing of events: the
services (``notifications.services``) call them and publish.
"""

import functools
from typing import NamedTuple

from django.db import connection, transaction
from django.db.models import Count

from notifications.models import Notification, UnreadCounter
from streamsite.pg_arrays import int_array


def _table() -> str:
    return connection.ops.quote_name(UnreadCounter._meta.db_table)


def counters_increment(user_ids: list[int], by: int = 1) -> dict[int, int]:
    """Add ``by`` to each user's counter (creating missing rows); return the new values.

    One statement for the whole list. Rows are locked in ascending user id, the order
    every caller uses, so concurrent batches wait for each other instead of deadlocking.
    """
    ids = sorted({int(user_id) for user_id in user_ids})
    if not ids:
        return {}
    table = _table()
    # A row created here starts with every existing announcement read, as one created
    # with the user does (``counter_create``): announcements before it are not news. The
    # newest announcement is looked up once per statement: repeated in each VALUES row,
    # PostgreSQL planned 1,000 subqueries (74 ms of planning for 1,000 recipients).
    notification = connection.ops.quote_name(Notification._meta.db_table)
    if connection.vendor == "postgresql":
        # The ids as one array parameter: no statement text or parameters per recipient.
        rows, params = "unnest(%s::bigint[]) AS given (user_id)", [int_array(ids)]
    else:
        # SQLite names a VALUES list's columns column1, column2...
        placeholders = ", ".join(["(%s)"] * len(ids))
        rows = f"(SELECT column1 AS user_id FROM (VALUES {placeholders})) AS given"  # noqa: S608
        params = ids
    # INSERT ... ON CONFLICT ... RETURNING: PostgreSQL 9.5+ and SQLite 3.35+ alike. Only
    # the models' quoted table names are interpolated; every value is a parameter. The
    # WHERE is for SQLite's parser, which needs one before ON CONFLICT.
    sql = (
        "WITH latest AS (SELECT COALESCE(MAX(id), 0) AS id FROM "  # noqa: S608
        f"{notification} WHERE recipient_id IS NULL) "
        f"INSERT INTO {table} (user_id, unread, announcements_read_up_to) "
        f"SELECT given.user_id, {int(by)}, latest.id FROM latest, {rows} WHERE true "
        "ORDER BY given.user_id "
        f"ON CONFLICT (user_id) DO UPDATE SET unread = {table}.unread + excluded.unread "
        f"RETURNING user_id, unread"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return dict(cursor.fetchall())


class Drawn(NamedTuple):
    """A user's new notification as the counter statement drew it."""

    unread: int
    id: int
    #: The id drawn for their notification before this one (it may have been deleted
    #: since); None when the counter does not know it.
    previous: int | None


def feed_lock_for_writing() -> None:
    """Take the notifications table's ``ROW EXCLUSIVE`` lock before any counter row, as
    every transaction that writes notifications does (the module docstring). The lock
    that writing would take anyway; a no-op on SQLite, which writes one at a time."""
    if connection.vendor == "postgresql":
        table = connection.ops.quote_name(Notification._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(f"LOCK TABLE {table} IN ROW EXCLUSIVE MODE")


@functools.cache
def _id_sequence(alias: str) -> str:
    """The notifications' id sequence, by name (looked up once per process)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [Notification._meta.db_table])
        return cursor.fetchone()[0]


def counters_increment_drawing_ids(user_ids: list[int]) -> dict[int, Drawn]:
    """Add one to each user's counter and draw their new notification's id under its lock
    (PostgreSQL; ``feed_lock_for_writing`` first); return what each got.

    One statement for the list, locking in ascending user id. The id is drawn by the
    conflict branch, which runs with the row locked, so a user's ids are drawn in commit
    order, and the counter hands back the one it drew last time. A counter row this
    creates (a user without one) gets its id from a second statement, under the lock of
    its uncommitted insert, and no ``previous``.
    """
    ids = sorted({int(user_id) for user_id in user_ids})
    if not ids:
        return {}
    table = _table()
    notification = connection.ops.quote_name(Notification._meta.db_table)
    sequence = _id_sequence(connection.alias)
    # The values of an inserted row are computed before the conflict is known, so no id
    # is drawn there (it would be wasted on every existing counter); SET sees the row
    # as it was, so previous_id takes the old newest_id.
    sql = (
        "WITH latest AS (SELECT COALESCE(MAX(id), 0) AS id FROM "  # noqa: S608
        f"{notification} WHERE recipient_id IS NULL) "
        f"INSERT INTO {table} (user_id, unread, announcements_read_up_to) "
        "SELECT given.user_id, 1, latest.id FROM latest, "
        "unnest(%s::bigint[]) AS given (user_id) ORDER BY given.user_id "
        f"ON CONFLICT (user_id) DO UPDATE SET unread = {table}.unread + 1, "
        f"previous_id = {table}.newest_id, newest_id = nextval(%s::regclass) "
        "RETURNING user_id, unread, newest_id, previous_id"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [int_array(ids), sequence])
        rows = cursor.fetchall()
        created = [user_id for user_id, _unread, newest, _previous in rows if newest is None]
        drawn_now = {}
        if created:
            cursor.execute(
                f"UPDATE {table} SET newest_id = nextval(%s::regclass) "  # noqa: S608
                "WHERE user_id = ANY(%s::bigint[]) RETURNING user_id, newest_id",
                [sequence, int_array(created)],
            )
            drawn_now = dict(cursor.fetchall())
    return {
        user_id: Drawn(unread, newest if newest is not None else drawn_now[user_id], previous)
        for user_id, unread, newest, previous in rows
    }


def counter_create(user_id: int) -> None:
    """Give a new user their counter: nothing unread, earlier announcements read."""
    counters_increment([user_id], by=0)


def counter_decrement(user_id: int, by: int) -> int:
    """Take ``by`` off the user's counter (never below 0); return the new value."""
    table = _table()
    largest = "GREATEST" if connection.vendor == "postgresql" else "MAX"
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET unread = {largest}(unread - %s, 0) "  # noqa: S608
            f"WHERE user_id = %s RETURNING unread",
            [int(by), int(user_id)],
        )
        row = cursor.fetchone()
    return row[0] if row else 0


def counters_decrement(amounts: dict[int, int]) -> dict[int, int]:
    """``counter_decrement`` for several users, in ascending id (the lock order)."""
    return {user_id: counter_decrement(user_id, amounts[user_id]) for user_id in sorted(amounts)}


def counter_lock(user_id: int) -> None:
    """Take the user's counter lock without changing it (see the module docstring)."""
    counters_increment([user_id], by=0)


def counters_rebuild(user_ids: list[int] | None = None) -> int:
    """Recompute counters from the rows (all users, or these); return how many were set.

    For repairs and for data written around the services (bulk imports, the benchmark's
    history). It counts every unread row once: run it on purpose, never per publish.
    """
    with transaction.atomic():
        counters = UnreadCounter.objects.all()
        unread = Notification.objects.filter(read_at__isnull=True, recipient__isnull=False)
        if user_ids is not None:
            counters = counters.filter(user_id__in=user_ids)
            unread = unread.filter(recipient_id__in=user_ids)
        # Rows written around the services may be newer than what a counter holds: its
        # newest id is forgotten (the next publish reads the feed instead).
        counters.update(unread=0, newest_id=None, previous_id=None)
        counts = dict(
            unread.values("recipient_id").annotate(n=Count("id")).values_list("recipient_id", "n")
        )
        UnreadCounter.objects.bulk_create(
            [UnreadCounter(user_id=uid, unread=n) for uid, n in counts.items()],
            update_conflicts=True,
            unique_fields=["user"],
            update_fields=["unread"],
            batch_size=1000,
        )
    return len(counts)
