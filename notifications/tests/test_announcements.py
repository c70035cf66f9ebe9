"""Announcements: stored once for every user, read state per user, live on every stream."""

import json
import re

import pytest
from asgiref.sync import sync_to_async
from django.db import connection
from django.test.utils import CaptureQueriesContext

from notifications import selectors, services
from notifications.events import ANNOUNCEMENTS_KEY
from notifications.models import Notification
from notifications.stream_state import StreamState
from notifications.tests.streaming import Stream, resumed_feed
from notifications.views import export_lines
from streamsite.streaming.hub import close_hub
from streamsite.testing.concurrency import (
    ids_resumed_across_out_of_order_commits,
    ids_when_second_starts_before_first_commits,
)
from streamsite.testing.services import skip_or_fail

announce = services.announcement_create


def read_flags(user) -> dict[str, bool]:
    return {n.title: n.is_read for n in selectors.notifications_of(user.pk)}


# Stored once ------------------------------------------------------------------------------


def test_an_announcement_is_one_row_and_one_event_however_many_users(capture_published, make_user):
    """The cost of telling everyone does not grow with the users: 5 users and 40 users
    see the same queries, one row, one event."""
    shapes = []
    previous = 0
    for count in (5, 40):
        for n in range(count):
            make_user(f"u{count}-{n}")
        with capture_published() as events, CaptureQueriesContext(connection) as queries:
            announcement = announce(title=f"to {count}")
        shapes.append([re.sub(r"\d+|'[^']*'", "?", q["sql"]) for q in queries.captured_queries])
        event = {"kind": "created", **announcement.as_event(), "unread": None}
        # The announcement before it: a stream that has not sent that one reads first.
        assert events == [(ANNOUNCEMENTS_KEY, event | {"previous": previous})]
        previous = announcement.pk
    assert shapes[0] == shapes[1]
    assert list(Notification.objects.values_list("recipient_id", flat=True)) == [None, None]


def test_every_user_sees_it_unread_and_reads_it_for_themselves(user, other_user):
    services.notification_create(recipient=user, title="own")
    news = announce(title="news")
    assert [selectors.unread_count(u.pk) for u in (user, other_user)] == [2, 1]
    assert read_flags(user) == {"news": False, "own": False}

    assert services.notification_mark_read(user=user, notification_id=news.pk)
    assert not services.notification_mark_read(user=user, notification_id=news.pk)  # again
    assert read_flags(user) == {"news": True, "own": False}
    assert read_flags(other_user) == {"news": False}
    assert [selectors.unread_count(u.pk) for u in (user, other_user)] == [1, 1]


def test_mark_all_read_covers_announcements_until_the_next_one(user, other_user):
    first = announce(title="first")
    services.notification_mark_read(user=user, notification_id=first.pk)
    announce(title="second")
    services.notification_create(recipient=user, title="own")
    assert services.notifications_mark_all_read(user=user) == 2  # "second" and "own"
    assert selectors.unread_count(user.pk) == 0
    assert set(read_flags(user).values()) == {True}
    announce(title="third")
    assert selectors.unread_count(user.pk) == 1
    assert selectors.unread_count(other_user.pk) == 3


def test_a_new_user_has_read_earlier_announcements(make_user):
    announce(title="before you came")
    newcomer = make_user("newcomer")
    assert selectors.unread_count(newcomer.pk) == 0
    assert read_flags(newcomer) == {"before you came": True}
    announce(title="after")
    assert selectors.unread_count(newcomer.pk) == 1


def test_read_events_carry_the_announcement_count_and_its_position(capture_published, user):
    news = announce(title="news")
    announce(title="more news")
    with capture_published() as events:
        services.notification_mark_read(user=user, notification_id=news.pk)
    ((_key, event),) = events
    assert (event["unread"], event["announcements_unread"]) == (0, 1)
    assert event["announcements_counted_up_to"] == news.pk + 1


def test_mark_read_many_leaves_announcements_alone(user):
    news = announce(title="news")
    assert services.notifications_mark_read_many(notification_ids=[news.pk]) == 0
    assert selectors.unread_count(user.pk) == 1


def test_the_list_page_and_the_bell_show_each_users_read_state(user_client, user, other_user):
    news = announce(title="Site news")
    services.notification_mark_read(user=other_user, notification_id=news.pk)
    page = user_client.get("/notifications/").content.decode()
    assert "Site news" in page and "is-unread" in page


def test_the_export_includes_announcements_with_the_users_read_state(user, other_user):
    own = services.notification_create(recipient=user, title="own")
    news = announce(title="news")
    services.notification_create(recipient=other_user, title="not yours")
    services.notification_mark_read(user=user, notification_id=news.pk)
    later = announce(title="later")

    async def export():
        return b"".join([chunk async for chunk in export_lines(user.pk)])

    from asgiref.sync import async_to_sync

    rows = [json.loads(line) for line in async_to_sync(export)().splitlines()]
    assert [(r["id"], r["title"], r["read"]) for r in rows] == [
        (own.pk, "own", False),
        (news.pk, "news", True),
        (later.pk, "later", False),
    ]
    assert rows[1]["read_at"] is not None and rows[2]["read_at"] is None


def test_deleting_an_announcement_tells_every_stream_to_recount(capture_published, user):
    news = announce(title="news")
    with capture_published() as events:
        assert services.notifications_delete(notification_ids=[news.pk]) == 1
    assert events == [(ANNOUNCEMENTS_KEY, {"kind": "deleted", "ids": [news.pk], "unread": None})]
    assert selectors.unread_count(user.pk) == 0


# Streams ----------------------------------------------------------------------------------


def test_a_stream_counts_only_announcements_it_has_not_counted():
    """An announcement committed before the count but delivered live afterwards must not
    be counted twice; one after the counted position is news."""
    state = StreamState(last_id=10)
    state.counted(selectors.UnreadParts(own=2, announcements=3, counted_up_to=10))
    assert state.unread == 5
    early = {"kind": "created", "id": 9, "unread": None, "title": "t", "body": "", "url": ""}
    early |= {"level": "info", "created_at": "2026-01-01T00:00:00+00:00", "read": False}
    state.render_live(early)
    assert state.unread == 5
    state.render_live({**early, "id": 11})
    assert state.unread == 6
    state.render_live({**early, "id": 11})  # delivered twice: counted once
    assert state.unread == 6
    state.render_live({**early, "id": 12, "unread": 4})  # the user's own: absolute count
    assert state.unread == 4 + 4


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("channel_layer")
class TestLive:
    @pytest.fixture(autouse=True)
    async def close_the_hub(self, settings):
        settings.SSE_KEEPALIVE_SECONDS = 30
        yield
        await close_hub()

    async def test_reaches_every_users_stream_with_their_own_count(self, user, other_user):
        await sync_to_async(services.notification_create)(recipient=user, title="own")
        streams = [await Stream(u.pk, None).live() for u in (user, other_user)]
        news = await sync_to_async(announce)(title="Site news")
        for stream, count in zip(streams, (2, 1), strict=True):
            event = await stream.reader.until(lambda e: e["event"] == "notification")
            assert json.loads(event["data"])["title"] == "Site news"
            assert event["id"] == str(news.pk)
            assert await stream.reader.next_event() == {
                "event": "unread",
                "data": json.dumps({"count": count}, separators=(",", ":")),
            }
        # Reading it in one place updates that user's streams only.
        await sync_to_async(services.notification_mark_read)(user=user, notification_id=news.pk)
        await streams[0].reader.until(lambda e: e["event"] == "read")
        assert await streams[0].reader.next_event() == {"event": "unread", "data": '{"count":1}'}
        for stream in streams:
            await stream.disconnect()

    async def test_resume_replays_announcements_with_the_users_read_state(self, user):
        own = await sync_to_async(services.notification_create)(recipient=user, title="own")
        news = await sync_to_async(announce)(title="news")
        await sync_to_async(services.notification_mark_read)(user=user, notification_id=news.pk)
        stream = Stream(user.pk, own.pk - 1)
        replayed = [
            await stream.reader.until(lambda e: e["event"] == "notification") for _ in range(2)
        ]
        assert [(e["id"], json.loads(e["data"])["read"]) for e in replayed] == [
            (str(own.pk), False),
            (str(news.pk), True),
        ]
        assert await stream.reader.next_event() == {"event": "unread", "data": '{"count":1}'}
        await stream.disconnect()

    async def test_a_deleted_announcement_is_recounted(self, user):
        news = await sync_to_async(announce)(title="news")
        stream = await Stream(user.pk, None).live()
        await sync_to_async(services.notifications_delete)(notification_ids=[news.pk])
        event = await stream.reader.until(lambda e: e["event"] == "deleted")
        assert json.loads(event["data"]) == {"ids": [news.pk]}
        assert await stream.reader.next_event() == {"event": "unread", "data": '{"count":0}'}
        await stream.disconnect()


# Commit order (PostgreSQL) ----------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_an_announcement_waits_for_notifications_still_uncommitted(user):
    """Announcements share the id sequence with everyone's own notifications: one that
    committed ahead of an earlier id would let a stream resume past that id and skip it."""
    if connection.vendor != "postgresql":
        skip_or_fail("table locks between connections need PostgreSQL")
    own, announcement = ids_when_second_starts_before_first_commits(
        lambda: services.notification_create(recipient=user, title="own").pk,
        lambda: announce(title="news").pk,
    )
    assert own < announcement


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("announcement_first", [True, False], ids=["announced-first", "own-first"])
def test_a_stream_resuming_between_an_announcement_and_a_notification_gets_both(
    user, announcement_first
):
    """Regression (issue #13): an announcement and a user's own notification share one id
    sequence in the user's feed; whichever drew its id first and committed last was skipped
    by a stream that resumed between the two commits."""
    if connection.vendor != "postgresql":
        skip_or_fail("table locks between connections need PostgreSQL")
    writes = [
        lambda: announce(title="news").pk,
        lambda: services.notification_create(recipient=user, title="own").pk,
    ]
    if not announcement_first:
        writes.reverse()
    first, second, seen = ids_resumed_across_out_of_order_commits(
        *writes, resumed_feed(user), after=0
    )
    assert seen == [first, second]
