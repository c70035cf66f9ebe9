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

These functions run inside the caller's transaction and know nothing of events: the
services (``notifications.services``) call them and publish.
"""

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
        counters.update(unread=0)
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
