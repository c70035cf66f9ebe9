"""Unread counters: exact, independent of history on the publish path, and a commit-order lock."""

import json
import re

import pytest
from django.db import connection
from django.db.models import Count, Max
from django.test.utils import CaptureQueriesContext

from notifications import counters, selectors, services
from notifications.events import user_key
from notifications.models import Notification, UnreadCounter
from notifications.tests.streaming import resumed_feed
from streamsite.testing.concurrency import (
    ids_resumed_across_out_of_order_commits,
    ids_when_second_starts_before_first_commits,
    in_thread,
)
from streamsite.testing.services import skip_or_fail

NOTIFICATION_TABLE = "notifications_notification"


def give_backlog(users, unread_each: int) -> None:
    """``unread_each`` unread notifications per user, written in bulk, counters recounted."""
    Notification.objects.bulk_create(
        [Notification(recipient=u, title=f"old {n}") for u in users for n in range(unread_each)],
        batch_size=2000,
    )
    services.unread_counters_rebuild()


def true_unread() -> dict[int, int]:
    """Unread counts by counting rows: the truth the counters must match."""
    rows = (
        Notification.objects.filter(read_at__isnull=True)
        .values("recipient_id")
        .annotate(n=Count("id"))
        .values_list("recipient_id", "n")
    )
    return dict(rows)


def stored_counters() -> dict[int, int]:
    return {uid: n for uid, n in UnreadCounter.objects.values_list("user_id", "unread") if n}


def shape(sql: str) -> str:
    """A query with its literal values blanked, to compare what runs, not with what."""
    return re.sub(r"\d+", "N", re.sub(r"'[^']*'", "S", sql))


def publish_queries(recipients) -> list[str]:
    with CaptureQueriesContext(connection) as queries:
        services.notifications_create_many(recipients=recipients, title="broadcast")
        one = services.notification_create(recipient=recipients[0], title="just one")
        services.notification_mark_read(user=recipients[0], notification_id=one.pk)
    return [query["sql"] for query in queries.captured_queries]


# The publish path reads no history ----------------------------------------------------------


def test_publishing_reads_no_notification_rows_whatever_the_backlog(make_user):
    """Regression: every publish counted every unread row of every recipient (44 % of a
    broadcast's time at 300 unread each, and growing forever). Now the queries a publish
    runs are the same for recipients with no backlog and with a large one, and they read
    no one's history: on PostgreSQL the counters know each recipient's id before the new
    one, and the only read of the notifications table is the newest announcement below
    the new ids; SQLite also reads each recipient's newest id below theirs. Each is an
    index probe."""
    fresh = [make_user(f"fresh{n}") for n in range(5)]
    loaded = [make_user(f"loaded{n}") for n in range(5)]
    give_backlog(loaded, 300)
    publish_queries(fresh)  # the counters learn the newest ids (a rebuild forgets them)
    publish_queries(loaded)

    without_backlog = publish_queries(fresh)
    with_backlog = publish_queries(loaded)

    assert [shape(sql) for sql in with_backlog] == [shape(sql) for sql in without_backlog]
    reads = [
        sql
        for sql in with_backlog
        if NOTIFICATION_TABLE in sql and sql.lstrip().startswith("SELECT")
    ]
    postgresql = connection.vendor == "postgresql"
    for sql in reads:
        newest_below = "MAX(n.id)" in sql and "n.id < given.new_id" in sql
        announcement_below = (
            '"recipient_id" IS NULL' in sql and "LIMIT 1" in sql and '"id" <' in sql
        )
        assert announcement_below or (newest_below and not postgresql), sql
    # The batch's probes and the single notification's.
    assert len(reads) == (2 if postgresql else 4)


def test_a_counter_that_does_not_know_the_newest_id_reads_the_feed_once(
    capture_published, make_user
):
    """After a rebuild (rows written around the services may be newer than a counter
    knows), a publish reads the feed for the id before the new one, and the counter knows
    it from then on. Either way the event names the right ``previous``."""
    users = [make_user(f"r{n}") for n in range(3)]
    give_backlog(users, 2)  # ends with a rebuild
    newest = dict(
        Notification.objects.filter(recipient__in=users)
        .values("recipient_id")
        .annotate(top=Max("id"))
        .values_list("recipient_id", "top")
    )
    with capture_published() as events, CaptureQueriesContext(connection) as first:
        services.notifications_create_many(recipients=users, title="after the rebuild")
    with CaptureQueriesContext(connection) as second:
        services.notifications_create_many(recipients=users, title="and then")
    assert {key: event["previous"] for key, event in events} == {
        user_key(user_id): top for user_id, top in newest.items()
    }
    queries = [*first.captured_queries, *second.captured_queries]
    feed_reads = [q["sql"] for q in queries if "MAX(n.id)" in q["sql"]]
    # PostgreSQL: the first publish reads the feed, the second does not; SQLite reads it
    # every time.
    assert len(feed_reads) == (1 if connection.vendor == "postgresql" else 2)


def test_the_feed_position_probe_is_an_index_probe_whatever_the_history(make_user):
    """On PostgreSQL the ``previous`` read finds each recipient's newest row through the
    ``(recipient, id)`` index, not by walking the table back from the new id past
    everyone else's rows: a user notified rarely on a busy site costs the same."""
    if connection.vendor != "postgresql":
        skip_or_fail("the plan is PostgreSQL's")
    rare = [make_user(f"rare{n}") for n in range(3)]
    busy = [make_user(f"busy{n}") for n in range(50)]
    give_backlog(rare, 1)
    give_backlog(busy, 100)  # 5,000 rows of others after the rare users' one each
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE notifications_notification")
    newest = dict(Notification.objects.filter(recipient__in=rare).values_list("recipient_id", "id"))
    beyond = Notification.objects.aggregate(top=Max("id"))["top"] + 1
    with CaptureQueriesContext(connection) as queries:
        positions = selectors.feed_positions_before({u.pk: beyond for u in rare})
    assert positions == {u.pk: newest[u.pk] for u in rare}
    probe = queries.captured_queries[0]["sql"]
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + probe)
        plan = json.dumps(cursor.fetchone()[0])
    rows_read = sum(int(n) for n in re.findall(r'"Actual Rows": (\d+)', plan))
    filtered = sum(int(n) for n in re.findall(r'"Rows Removed by Filter": (\d+)', plan))
    assert rows_read + filtered < 50, plan  # a handful per recipient, not 5,000


def test_events_carry_the_counter_including_the_backlog(capture_published, make_user):
    users = [make_user(f"u{n}") for n in range(3)]
    give_backlog(users[:1], 40)
    with capture_published() as events:
        services.notifications_create_many(recipients=users, title="hello")
    assert [event["unread"] for _key, event in events] == [41, 1, 1]


# Exact through every write --------------------------------------------------------------


def test_counters_follow_every_service(make_user):
    ann, ben, cat = (make_user(name) for name in ("ann", "ben", "cat"))
    first = services.notification_create(recipient=ann, title="one")
    services.notifications_create_many(recipients=[ann, ben, cat, ben], title="all")
    services.notification_create(recipient=ben, title="two")
    assert stored_counters() == true_unread() == {ann.pk: 2, ben.pk: 2, cat.pk: 1}

    assert services.notification_mark_read(user=ann, notification_id=first.pk)
    assert not services.notification_mark_read(user=ann, notification_id=first.pk)  # again
    assert not services.notification_mark_read(user=cat, notification_id=first.pk)  # not hers
    assert stored_counters() == true_unread()

    services.notifications_mark_all_read(user=ben)
    assert stored_counters() == true_unread() == {ann.pk: 1, cat.pk: 1}

    cats = list(Notification.objects.filter(recipient=cat).values_list("pk", flat=True))
    services.notifications_mark_read_many(notification_ids=[*cats, first.pk])
    assert stored_counters() == true_unread() == {ann.pk: 1}

    # Deleting: a read row leaves the counter alone, an unread one comes off it.
    anns = list(Notification.objects.filter(recipient=ann).values_list("pk", flat=True))
    assert services.notifications_delete(notification_ids=anns) == 2
    assert stored_counters() == true_unread() == {}
    assert selectors.unread_count(ann.pk) == 0


def test_delete_publishes_the_ids_and_the_new_count(capture_published, user, other_user):
    kept = services.notification_create(recipient=user, title="kept")
    gone = services.notification_create(recipient=user, title="gone")
    theirs = services.notification_create(recipient=other_user, title="theirs")
    with capture_published() as events:
        services.notifications_delete(notification_ids=[gone.pk, theirs.pk, 10**9])
    assert sorted(events) == sorted(
        [
            (f"notifications.user.{user.pk}", {"kind": "deleted", "ids": [gone.pk], "unread": 1}),
            (
                f"notifications.user.{other_user.pk}",
                {"kind": "deleted", "ids": [theirs.pk], "unread": 0},
            ),
        ]
    )
    assert list(Notification.objects.values_list("pk", flat=True)) == [kept.pk]


def test_rebuild_repairs_counters_written_around_the_services(user, other_user):
    Notification.objects.bulk_create([Notification(recipient=user, title="raw")] * 3)
    UnreadCounter.objects.update_or_create(user=other_user, defaults={"unread": 7})
    assert services.unread_counters_rebuild() == 1
    assert stored_counters() == {user.pk: 3}
    assert [selectors.unread_count(u.pk) for u in (user, other_user)] == [3, 0]


def test_a_counter_never_goes_below_zero(user):
    counters.counters_increment([user.pk])
    assert counters.counter_decrement(user.pk, 5) == 0
    assert counters.counter_decrement(user.pk + 1000, 1) == 0  # no row: nothing to take off


# Concurrency (PostgreSQL: real row locks between connections) ------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_users_notifications_commit_in_id_order(user):
    """Regression (ids are not commit order): a notification that took its id first but
    committed last was skipped by a client that had resumed after a later id. Now a
    second notification for the same user waits for the first one's commit before it gets
    an id, so a user's ids are in commit order."""
    if connection.vendor != "postgresql":
        skip_or_fail("row locks between connections need PostgreSQL")
    first, second = ids_when_second_starts_before_first_commits(
        lambda: services.notification_create(recipient=user, title="first").pk,
        lambda: services.notification_create(recipient=user, title="second").pk,
    )
    assert first < second
    assert selectors.unread_count(user.pk) == 2


@pytest.mark.django_db(transaction=True)
def test_a_stream_resuming_between_two_notifications_committing_out_of_order_gets_both(
    user, make_user
):
    """Regression (issue #13: two notifications committing in the opposite order of their
    ids): a stream resuming between the commits (``Last-Event-ID``) saw the later id only
    and resumed after it; the earlier one, committed last, never reached it. A broadcast
    that includes the user is ordered by the same lock."""
    if connection.vendor != "postgresql":
        skip_or_fail("row locks between connections need PostgreSQL")
    others = [make_user(f"other{n}") for n in range(3)]

    def broadcast_including_user() -> int:
        services.notifications_create_many(recipients=[*others, user], title="second")
        return Notification.objects.get(recipient=user, title="second").pk

    first, second, seen = ids_resumed_across_out_of_order_commits(
        lambda: services.notification_create(recipient=user, title="first").pk,
        broadcast_including_user,
        resumed_feed(user),
        after=0,
    )
    assert seen == [first, second]


@pytest.mark.django_db(transaction=True)
def test_concurrent_broadcasts_keep_counters_exact(make_user):
    if connection.vendor != "postgresql":
        skip_or_fail("concurrent writers need PostgreSQL")
    users = [make_user(f"c{n}") for n in range(20)]
    results: dict = {}
    threads = [
        in_thread(
            # Overlapping, differently ordered recipient lists: no deadlock, no lost update.
            lambda i=i: [
                services.notifications_create_many(recipients=users[i % 3 :][::-1], title="x")
                for _ in range(5)
            ],
            results,
            f"t{i}",
        )
        for i in range(4)
    ]
    for thread in threads:
        thread.join(60)
    assert not [r for r in results.values() if isinstance(r, Exception)], results
    assert stored_counters() == true_unread()
    assert sum(true_unread().values()) == 5 * (20 + 19 + 18 + 20)


# Lock order (notifications/counters.py) -----------------------------------------------------

TAKES_THE_TABLE = re.compile(
    r'^\s*(LOCK TABLE "notifications_notification" IN ROW EXCLUSIVE MODE'
    r'|INSERT INTO "notifications_notification"|UPDATE "notifications_notification"'
    r'|DELETE FROM "notifications_notification")'
)
TAKES_A_COUNTER = re.compile(r'(INSERT INTO|UPDATE) "notifications_unreadcounter"')


def _first(pattern: re.Pattern, queries: list[str]) -> int:
    return next(i for i, sql in enumerate(queries) if pattern.search(sql))


@pytest.mark.parametrize(
    "write",
    [
        "create",
        "create_many",
        "mark_read",
        "mark_announcement_read",
        "mark_all_read",
        "mark_read_many",
        "delete",
    ],
)
def test_every_write_takes_the_table_before_a_counter(make_user, write):
    """Publishes draw ids in the counter statement, so they take the table's lock first;
    a write that took a counter first could queue for the table behind an announcement
    waiting for a publish that waits for that counter: a deadlock."""
    if connection.vendor != "postgresql":
        skip_or_fail("the lock order is PostgreSQL's (SQLite writes one at a time)")
    user = make_user("locks")
    own = services.notification_create(recipient=user, title="own")
    news = services.announcement_create(title="news")
    run = {
        "create": lambda: services.notification_create(recipient=user, title="x"),
        "create_many": lambda: services.notifications_create_many(recipients=[user], title="x"),
        "mark_read": lambda: services.notification_mark_read(user=user, notification_id=own.pk),
        "mark_announcement_read": lambda: services.notification_mark_read(
            user=user, notification_id=news.pk
        ),
        "mark_all_read": lambda: services.notifications_mark_all_read(user=user),
        "mark_read_many": lambda: services.notifications_mark_read_many(notification_ids=[own.pk]),
        "delete": lambda: services.notifications_delete(notification_ids=[own.pk]),
    }[write]
    with CaptureQueriesContext(connection) as captured:
        run()
    queries = [q["sql"] for q in captured.captured_queries]
    assert _first(TAKES_THE_TABLE, queries) < _first(TAKES_A_COUNTER, queries), queries
