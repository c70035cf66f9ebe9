"""The unread chat counts on a real notification stream (``event: chat-unread``): sent on
connect, kept live by the rooms' events, coalesced, and read again when the user reads,
joins or leaves a room. Runs on the embedded layer and on Redis (``REDIS_URL``)."""

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async

from chat import services
from chat.events import room_key
from chat.tests.factories import add_messages, post, room_with
from notifications import watches
from notifications.events import user_key
from notifications.tests.streaming import Stream
from streamsite.streaming.hub import Subscription, close_hub, get_hub

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("channel_layer")]


@pytest.fixture(autouse=True)
async def close_the_hub(settings):
    settings.SSE_KEEPALIVE_SECONDS = 30
    yield
    await close_hub()


@pytest.fixture
def quick(monkeypatch):
    """Sends at most every 0.1 s instead of every second (the coalescing test keeps 1 s)."""
    monkeypatch.setattr(watches, "WATCH_INTERVAL_SECONDS", 0.1)


def counts(event: dict) -> dict:
    return json.loads(event["data"])


async def until_counts(stream: Stream, predicate) -> dict:
    event = await stream.reader.until(
        lambda e: e["event"] == "chat-unread" and predicate(counts(e))
    )
    return counts(event)


def chat_unread_events(stream: Stream) -> list[dict]:
    return [counts(e) for e in stream.reader.events if e["event"] == "chat-unread"]


async def test_the_counts_come_on_connect_and_go_up_when_others_post(user, other_user, quick):
    ops = await sync_to_async(room_with)("ops", members=[user, other_user])
    await sync_to_async(add_messages)(ops, other_user, 2)
    stream = await Stream(user.pk, None).live()
    try:
        first = await until_counts(stream, lambda c: True)
        assert first == {"total": 2, "rooms": {"ops": 2}, "cap": 100}
        await sync_to_async(post)(other_user, ops, "one more")
        assert (await until_counts(stream, lambda c: c["total"] == 3))["rooms"] == {"ops": 3}
        # The user posts: posting reads the room.
        await sync_to_async(post)(user, ops, "read it all")
        assert await until_counts(stream, lambda c: c["total"] == 0) == {
            "total": 0,
            "rooms": {},
            "cap": 100,
        }
    finally:
        await stream.disconnect()


async def test_room_events_follow_the_stream_without_entering_its_buffer(
    user, other_user, monkeypatch
):
    """The room's key is followed by the stream (one subscription, for the hub's one group
    membership), and its events are taken directly: none is queued for the stream."""
    ops = await sync_to_async(room_with)("ops", members=[user, other_user])
    stream = await Stream(user.pk, None).live()
    hub = get_hub()
    try:
        await until_counts(stream, lambda c: True)
        assert hub.local_subscriber_count(room_key(ops.pk)) == 1
        assert hub.is_member(room_key(ops.pk))
        buffered = []
        (stream_events,) = hub._keys[user_key(user.pk)].subscriptions
        real_push = Subscription.push

        def recording_push(subscription, item):
            if subscription is stream_events:
                buffered.append(item)
            real_push(subscription, item)

        monkeypatch.setattr(Subscription, "push", recording_push)
        for n in range(5):
            await sync_to_async(post)(other_user, ops, f"m{n}")
        await until_counts(stream, lambda c: c["total"] == 5)
        assert all(item is watches.WATCH_CHANGED for item in buffered)
        assert 1 <= len(buffered) <= 5
    finally:
        await stream.disconnect()
    assert hub.local_subscriber_count(room_key(ops.pk)) == 0


async def test_a_burst_of_messages_is_sent_at_most_once_a_second(user, other_user):
    ops = await sync_to_async(room_with)("ops", members=[user, other_user])
    stream = await Stream(user.pk, None).live()
    loop = asyncio.get_running_loop()
    try:
        await until_counts(stream, lambda c: True)
        started = loop.time()
        for n in range(30):
            await sync_to_async(post)(other_user, ops, f"m{n}")
        await until_counts(stream, lambda c: c["total"] == 30)
        elapsed = loop.time() - started
        sent = chat_unread_events(stream)[1:]
        # One at once, then at most one per second: never one per message.
        assert len(sent) <= 2 + elapsed / watches.WATCH_INTERVAL_SECONDS
        assert len(sent) < 30
        assert [c["total"] for c in sent] == sorted(c["total"] for c in sent)
    finally:
        await stream.disconnect()


async def test_reading_a_room_updates_the_counts(user, other_user, quick):
    ops = await sync_to_async(room_with)("ops", members=[user, other_user])
    dev = await sync_to_async(room_with)("dev", members=[user, other_user])
    await sync_to_async(add_messages)(dev, other_user, 1)
    last = (await sync_to_async(add_messages)(ops, other_user, 3))[-1]
    stream = await Stream(user.pk, None).live()
    try:
        await until_counts(stream, lambda c: c["total"] == 4)
        await sync_to_async(services.membership_mark_read)(user=user, room=ops, up_to=last.pk)
        assert (await until_counts(stream, lambda c: c["total"] == 1))["rooms"] == {"dev": 1}
    finally:
        await stream.disconnect()


async def test_joining_and_leaving_rooms_changes_what_the_stream_follows(user, other_user, quick):
    lobby = await sync_to_async(room_with)("lobby", members=[other_user])
    stream = await Stream(user.pk, None).live()
    hub = get_hub()
    try:
        await until_counts(stream, lambda c: True)
        # A first post joins (nothing unread: no event), and the stream follows the room.
        await sync_to_async(post)(user, lobby, "hello, joining")
        await sync_to_async(post)(other_user, lobby, "welcome")
        assert (await until_counts(stream, lambda c: c["total"] == 1))["rooms"] == {"lobby": 1}
        assert hub.local_subscriber_count(room_key(lobby.pk)) == 1

        await sync_to_async(services.membership_remove)(room=lobby, user=user)
        await until_counts(stream, lambda c: c["total"] == 0)
        # The read that sent it also left the room's key.
        assert hub.local_subscriber_count(room_key(lobby.pk)) == 0
    finally:
        await stream.disconnect()


async def test_a_deleted_message_is_counted_again_from_the_database(
    user, other_user, staff_user, quick
):
    ops = await sync_to_async(room_with)("ops", members=[user, other_user])
    stream = await Stream(user.pk, None).live()
    try:
        await until_counts(stream, lambda c: True)
        first = await sync_to_async(post)(other_user, ops, "oops")
        await sync_to_async(post)(other_user, ops, "fine")
        await until_counts(stream, lambda c: c["total"] == 2)
        await sync_to_async(services.message_delete)(user=staff_user, message=first)
        await until_counts(stream, lambda c: c["total"] == 1)
    finally:
        await stream.disconnect()


async def test_lost_events_make_the_stream_count_again(user, other_user, quick):
    """A RESYNC from the hub (events of the room's key may be lost) makes a read."""
    ops = await sync_to_async(room_with)("ops", members=[user, other_user])
    stream = await Stream(user.pk, None).live()
    try:
        await until_counts(stream, lambda c: True)
        await sync_to_async(add_messages)(ops, other_user, 4)  # no events
        get_hub()._resync([room_key(ops.pk)])
        await until_counts(stream, lambda c: c["total"] == 4)
    finally:
        await stream.disconnect()
