"""The notification stream, driven in-process the way Django's ASGI handler drives it."""

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async
from django.db import connection
from prometheus_client import REGISTRY

from notifications import services
from notifications.events import user_key
from notifications.stream_state import StreamState
from notifications.streams import notification_stream
from notifications.tests.streaming import Stream
from streamsite.observability import metrics
from streamsite.streaming.hub import get_hub
from streamsite.testing.layers import group_members
from streamsite.testing.sse import StreamReader

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("channel_layer", "close_the_hub"),
]

create = sync_to_async(services.notification_create)

NOTIFICATIONS = {"app": "notifications"}
SSE_OVERFLOW = {"app": "notifications", "reason": "sse_overflow"}


def sample(name: str, labels: dict) -> float:
    """A metric's value in this process' registry (0 before it was first touched)."""
    metrics.flush_tallies()
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def fast_stream(settings):
    settings.SSE_KEEPALIVE_SECONDS = 30
    return settings


async def test_sends_retry_then_unread_count_on_connect(user, fast_stream):
    await create(recipient=user, title="before")
    stream = Stream(user.pk, None)
    first = await stream.reader.next_chunk()
    assert first == b"retry: 2000\n\n"
    assert await stream.reader.next_event() == {"event": "unread", "data": '{"count":1}'}
    assert stream.reader.notification_ids() == []  # no id given: nothing replayed
    await stream.disconnect()


async def test_replays_after_the_last_id_in_order_then_goes_live(user, other_user, fast_stream):
    first = await create(recipient=user, title="one")
    second = await create(recipient=user, title="two", body="line 1\nline 2")
    await create(recipient=other_user, title="not yours")
    third = await create(recipient=user, title="three")
    stream = await Stream(user.pk, first.pk).live()
    assert stream.reader.notification_ids() == [second.pk, third.pk]
    replayed = json.loads(stream.reader.events[0]["data"])
    assert replayed["body"] == "line 1\nline 2"
    assert replayed["read"] is False and replayed["created_at"].endswith("+00:00")
    assert stream.reader.last("unread") == {"count": 3}

    fourth = await create(recipient=user, title="four", url="/chat/", level="warning")
    event = await stream.reader.until(lambda e: e["event"] == "notification")
    assert event["id"] == str(fourth.pk)
    assert json.loads(event["data"]) == fourth.as_event()
    assert await stream.reader.next_event() == {"event": "unread", "data": '{"count":4}'}
    await stream.disconnect()


async def test_a_delivered_notification_is_counted_and_its_stream_is_open(user, fast_stream):
    """The metrics (streamsite.observability): the stream counts as open while it is, and
    the notification written to it counts as delivered, with its latency observed."""
    open_before = sample("streamsite_streams_open", NOTIFICATIONS)
    delivered = {"app": "notifications", "type": "created"}
    delivered_before = sample("streamsite_events_delivered_total", delivered)
    latencies_before = sample("streamsite_delivery_latency_seconds_count", NOTIFICATIONS)
    stream = await Stream(user.pk, None).live()
    assert sample("streamsite_streams_open", NOTIFICATIONS) == open_before + 1
    await create(recipient=user, title="counted")
    await stream.reader.until(lambda e: e["event"] == "notification")
    assert sample("streamsite_events_delivered_total", delivered) == delivered_before + 1
    assert sample("streamsite_delivery_latency_seconds_count", NOTIFICATIONS) > latencies_before
    await stream.disconnect()
    assert sample("streamsite_streams_open", NOTIFICATIONS) == open_before


async def test_hand_over_is_gap_free_while_notifications_are_created(user, fast_stream):
    """Streams opened at different moments of a burst of creations each get every id once."""
    total = 60
    created: list[int] = []
    streams: list[Stream] = []

    async def create_burst():
        for n in range(total):
            created.append((await create(recipient=user, title=f"n{n}")).pk)
            if n % 12 == 5:
                streams.append(Stream(user.pk, 0))  # connect in the middle of the burst
            await asyncio.sleep(0)

    await create_burst()
    for stream in streams:
        await stream.reader.until(
            lambda e: e["event"] == "notification" and e["id"] == str(created[-1])
        )
        assert sorted(stream.reader.notification_ids()) == created
        assert len(stream.reader.notification_ids()) == total
        assert stream.reader.last("unread") == {"count": total}
    for stream in streams:
        await stream.disconnect()


async def test_mark_read_elsewhere_sends_read_and_unread(user, fast_stream):
    first = await create(recipient=user, title="one")
    await create(recipient=user, title="two")
    stream = await Stream(user.pk, None).live()
    await sync_to_async(services.notification_mark_read)(user=user, notification_id=first.pk)
    event = await stream.reader.until(lambda e: e["event"] == "read")
    assert json.loads(event["data"]) == {"ids": [first.pk], "up_to": None}
    assert await stream.reader.next_event() == {"event": "unread", "data": '{"count":1}'}
    await sync_to_async(services.notifications_mark_all_read)(user=user)
    event = await stream.reader.until(lambda e: e["event"] == "read")
    assert json.loads(event["data"])["up_to"] >= first.pk
    assert await stream.reader.next_event() == {"event": "unread", "data": '{"count":0}'}
    await stream.disconnect()


async def test_a_deletion_elsewhere_sends_deleted_and_unread(user, fast_stream):
    first = await create(recipient=user, title="one")
    await create(recipient=user, title="two")
    stream = await Stream(user.pk, None).live()
    await sync_to_async(services.notifications_delete)(notification_ids=[first.pk])
    event = await stream.reader.until(lambda e: e["event"] == "deleted")
    assert json.loads(event["data"]) == {"ids": [first.pk]}
    assert await stream.reader.next_event() == {"event": "unread", "data": '{"count":1}'}
    await stream.disconnect()


async def test_keepalive_comment_when_idle(user, settings):
    settings.SSE_KEEPALIVE_SECONDS = 0.05
    stream = await Stream(user.pk, None).live()
    assert await stream.reader.next_chunk() == b": keepalive\n\n"
    await stream.disconnect()


async def test_disconnect_releases_membership_and_tasks(user, fast_stream, channel_layer):
    tasks_before = asyncio.all_tasks()
    stream = await Stream(user.pk, None).live()
    hub = get_hub()
    key = user_key(user.pk)
    assert hub.local_subscriber_count(key) == 1
    assert await group_members(channel_layer, key) == {hub.channel}

    await stream.disconnect()  # asserts CancelledError propagated
    assert hub.local_subscriber_count() == 0
    await hub.wait_until_settled()
    assert await group_members(channel_layer, key) == set()
    leftover = asyncio.all_tasks() - tasks_before - set(hub._tasks) - {asyncio.current_task()}
    assert leftover == set()


async def test_disconnect_during_replay_leaves_no_cursor(user, fast_stream):
    """Closed mid-replay (as Django's aclosing does on disconnect): the replay reads page
    by page, so no cursor or connection is held even while it is suspended."""
    await sync_to_async(_bulk_notifications)(user, 1200)
    chunks = notification_stream(user.pk, 0)
    reader = StreamReader(chunks)
    await reader.until(lambda e: e["event"] == "notification")  # suspended mid-replay
    assert await sync_to_async(_open_cursors)() == 0
    await chunks.aclose()
    assert await sync_to_async(_open_cursors)() == 0
    assert get_hub().local_subscriber_count() == 0


def _bulk_notifications(user, count):
    from notifications.models import Notification

    Notification.objects.bulk_create(
        Notification(recipient=user, title=f"old {n}") for n in range(count)
    )


def _open_cursors() -> int:
    if connection.vendor != "postgresql":
        return 0
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_cursors")
        return cursor.fetchone()[0]


async def test_idle_stream_holds_no_database_connection(user, fast_stream):
    """Every connection the stream opened is closed (back in the pool) once it is live."""
    from django.db.backends.signals import connection_created

    opened = []

    def remember(sender, connection, **kwargs):
        opened.append(connection)

    await create(recipient=user, title="one")
    connection_created.connect(remember)
    try:
        stream = await Stream(user.pk, 0).live()
    finally:
        connection_created.disconnect(remember)
    assert opened, "the stream should have queried the database"
    assert all(wrapper.connection is None for wrapper in opened)
    await stream.disconnect()


async def test_stream_keeps_no_thread_of_its_own(user, fast_stream):
    """Its queries run on a small pool of their own: 40 open streams add no thread."""
    import threading

    from streamsite.streaming.db import STREAM_DB_THREADS

    await create(recipient=user, title="one")
    await Stream(user.pk, 0).live()  # the pool's threads exist from here on
    before = threading.active_count()
    streams = [await Stream(user.pk, 0).live() for _ in range(40)]
    assert threading.active_count() - before <= STREAM_DB_THREADS
    for stream in streams:
        await stream.disconnect()


async def test_overflow_ends_the_stream_and_resume_recovers(user, settings):
    """A client that stops reading costs at most SSE_BUFFER_EVENTS events of memory: then
    its stream ends, and reconnecting with its last id replays what it missed."""
    settings.SSE_KEEPALIVE_SECONDS = 30
    settings.SSE_BUFFER_EVENTS = 5
    chunks = notification_stream(user.pk, None)
    reader = StreamReader(chunks)
    await reader.until(lambda e: e["event"] == "unread")  # live; now stop reading
    created = [(await create(recipient=user, title=f"n{n}")).pk for n in range(8)]
    (subscription,) = get_hub()._keys[user_key(user.pk)].subscriptions
    closed_before = sample("streamsite_slow_clients_closed_total", SSE_OVERFLOW)
    async with asyncio.timeout(5):
        while not subscription.overflowed:  # noqa: ASYNC110 - set by the hub task; bounded
            await asyncio.sleep(0.01)
    await reader.until_end()
    assert reader.notification_ids() == []
    assert sample("streamsite_slow_clients_closed_total", SSE_OVERFLOW) == closed_before + 1
    await chunks.aclose()

    resumed = await Stream(user.pk, 0).live()
    assert resumed.reader.notification_ids() == created
    await resumed.disconnect()


async def test_lost_events_are_recovered_after_a_resync(user, settings, channel_layer):
    """Memberships vanish (Redis restarted empty); events published meanwhile are lost by the
    layer, but the hub's RESYNC makes the stream re-read them from the database."""
    settings.SSE_KEEPALIVE_SECONDS = 30
    settings.STREAM_HUB_HEARTBEAT_SECONDS = 0.05
    stream = await Stream(user.pk, None).live()
    hub = get_hub()
    for group in (user_key(user.pk), hub.heartbeats.group):
        await channel_layer.group_discard(group, hub.channel)
    lost = await create(recipient=user, title="published to nobody")
    event = await stream.reader.until(lambda e: e["event"] == "notification")
    assert event["id"] == str(lost.pk)
    await stream.disconnect()


def test_state_drops_live_duplicates_of_replayed_ids():
    state = StreamState(last_id=10)
    state.last_id = 11  # replayed from the database
    state.caught_up()
    state.unread = 1
    fields = {"title": "t", "body": "", "url": "", "level": "info", "created_at": "x"}
    duplicate = {"kind": "created", "id": 11, "read": False, "unread": 1, **fields}
    assert state.render_live(duplicate) == b""
    fresh = {"kind": "created", "id": 12, "read": False, "unread": 2, **fields}
    rendered = state.render_live(fresh)
    assert rendered.startswith(b"event: notification\nid: 12\n")
    assert rendered.endswith(b'event: unread\ndata: {"count":2}\n\n')
    assert state.last_id == 12
    assert state.render_live(fresh) == b""  # delivered twice (a recovered publish)


def test_state_floor_follows_live_notifications_that_name_the_one_before():
    """Each own notification names the one before it in the feed: when that one is held,
    the floor moves up and no live id is remembered (none for the collector to traverse)."""
    state = StreamState(last_id=10)
    state.unread = 0
    fields = {"title": "t", "body": "", "url": "", "level": "info", "created_at": "x"}
    previous = 10
    for notification_id in (14, 15, 19):
        event = {"kind": "created", "id": notification_id, "read": False, "unread": 1, **fields}
        event["previous"] = previous
        assert state.render_live(event).startswith(
            b"event: notification\nid: %d\n" % notification_id
        )
        assert (state.floor, state.last_id, state.sent_live) == (
            notification_id,
            notification_id,
            set(),
        )
        assert state.render_live(event) == b""  # a redelivery is still dropped
        previous = notification_id


def test_state_floor_stays_under_an_announcement_sent_live():
    """An announcement names only the announcement before it: what came between is not
    known to be held, so ids above the floor are remembered until the next read."""
    state = StreamState(last_id=10)
    state.unread = 0
    fields = {"title": "t", "body": "", "url": "", "level": "info", "created_at": "x"}
    announcement = {"kind": "created", "id": 20, "read": False, "unread": None, **fields}
    announcement["previous"] = 5
    assert state.render_live(announcement)
    own = {"kind": "created", "id": 21, "read": False, "unread": 1, "previous": 20, **fields}
    assert state.render_live(own)
    assert state.floor == 10 and state.sent_live == {20, 21} and state.last_id == 21
    assert state.render_live(own) == b"" and state.render_live(announcement) == b""


def test_state_forgets_old_live_ids_and_all_of_them_once_caught_up():
    state = StreamState(last_id=0)
    for notification_id in range(1, 3001):
        state._remember_sent(notification_id)
    assert len(state.sent_live) == 1024
    assert 3000 in state.sent_live and 1 not in state.sent_live
    state.last_id = 3000
    state.caught_up()
    assert state.sent_live == set() and state.floor == 3000


async def test_keepalives_never_cancel_the_layer_receive(user, settings, channel_layer):
    """One receive() stays pending across keepalives: a cancelled receive can drop a
    message channels-redis already popped."""
    settings.SSE_KEEPALIVE_SECONDS = 0.02
    calls = []
    real_receive = channel_layer.receive

    async def counting_receive(channel):
        calls.append(channel)
        return await real_receive(channel)

    channel_layer.receive = counting_receive
    stream = await Stream(user.pk, None).live()
    for _ in range(5):
        assert await stream.reader.next_chunk() == b": keepalive\n\n"
    receive_task = get_hub()._tasks[0]
    assert calls == [get_hub().channel]  # one call, still pending
    assert not receive_task.done()
    await stream.disconnect()


async def test_tabs_of_one_user_share_one_membership(user, fast_stream, channel_layer):
    """Eight tabs in one process: one group member, so one layer message per event."""
    streams = [await Stream(user.pk, None).live() for _ in range(8)]
    assert await group_members(channel_layer, user_key(user.pk)) == {get_hub().channel}
    created = await create(recipient=user, title="to every tab")
    for stream in streams:
        event = await stream.reader.until(lambda e: e["event"] == "notification")
        assert event["id"] == str(created.pk)
    for stream in streams:
        await stream.disconnect()


async def test_a_stream_outliving_group_expiry_still_delivers(user, settings, channel_layer):
    """channels-redis forgets members after group_expiry; the hub's renewal re-adds them."""
    settings.SSE_KEEPALIVE_SECONDS = 30
    settings.STREAM_GROUP_RENEW_SECONDS = 0.05
    stream = await Stream(user.pk, None).live()
    hub, key = get_hub(), user_key(user.pk)
    await channel_layer.group_discard(key, hub.channel)  # what expiry does after a day
    async with asyncio.timeout(5):
        while not await group_members(channel_layer, key):  # noqa: ASYNC110 - renewal task
            await asyncio.sleep(0.02)
    created = await create(recipient=user, title="a day later")
    event = await stream.reader.until(lambda e: e["event"] == "notification")
    assert event["id"] == str(created.pk)
    await stream.disconnect()


async def test_logging_out_ends_that_sessions_streams_only(user, fast_stream):
    from notifications.events import session_digest

    mine = await Stream.for_session(user.pk, session_digest("key-a")).live()
    other_browser = await Stream.for_session(user.pk, session_digest("key-b")).live()
    await sync_to_async(services.notification_streams_end_for_session)(
        user_id=user.pk, session_key="key-a"
    )
    await mine.reader.until_end()
    created = await create(recipient=user, title="still here")
    event = await other_browser.reader.until(lambda e: e["event"] == "notification")
    assert event["id"] == str(created.pk)
    await other_browser.disconnect()


def test_batch_events_encode_like_single_ones_with_the_shared_part_built_once():
    """Each recipient of a batch gets the bytes a single notification would give, and the
    JSON of the fields they share is built once for the whole batch."""
    from notifications.stream_state import notification_bytes
    from streamsite.streaming.hub import BATCH_CACHE, batch_message, expand_message
    from streamsite.streaming.sse import encode_json_event

    base = {"kind": "created", "title": 'Say "hi"\n<b>', "body": "é", "url": "", "level": "info"}
    base |= {"created_at": "2026-01-01T00:00:00+00:00", "read": False}
    message = batch_message(["a", "b"], base, {"id": [7, 12345], "unread": [1, 2]})
    events = [event for _key, event in expand_message(message, shared=True)]
    for event in events:
        alone = {k: v for k, v in event.items() if k != BATCH_CACHE}
        single = encode_json_event(
            {f: alone[f] for f in ("id", *base) if f != "kind"},
            event="notification",
            id=event["id"],
        )
        assert notification_bytes(event) == single
    cache = events[0][BATCH_CACHE]
    assert cache is events[1][BATCH_CACHE] and len(cache) == 1
