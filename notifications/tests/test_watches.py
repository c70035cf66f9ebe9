"""Other apps' state that follows shared keys (notifications/watches.py), with a watch of
the test's own: registered, read on connect, followed, sent coalesced, read again on a
``watch.refresh`` of the user's key, and never buffered in the stream."""

import json

import pytest
from asgiref.sync import sync_to_async

from notifications import services, watches
from notifications.tests.streaming import Stream
from streamsite.streaming.hub import Subscription, close_hub, get_hub
from streamsite.streaming.publish import publish_on_commit

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("channel_layer")]

SHARED = "tests.shared"


class CountingWatch(watches.Watch):
    """Counts the events of one shared key; its 'database' is a class attribute."""

    event = "test-count"
    stored = 0
    reads = 0

    def __init__(self, user_id):
        super().__init__(user_id)
        self.count = 0

    def read(self):
        CountingWatch.reads += 1
        return CountingWatch.stored

    def replace(self, snapshot):
        self.count = snapshot
        return {SHARED}

    def take(self, event):
        if event.get("kind") == "tick":
            self.count += 1
            return True
        return False

    def payload(self):
        return {"count": self.count}


@pytest.fixture(autouse=True)
async def counting_watch(settings, monkeypatch):
    settings.SSE_KEEPALIVE_SECONDS = 30
    monkeypatch.setattr(watches, "_watches", [CountingWatch])
    monkeypatch.setattr(watches, "WATCH_INTERVAL_SECONDS", 0.2)
    CountingWatch.stored = 0
    CountingWatch.reads = 0
    yield
    await close_hub()


def tick() -> None:
    publish_on_commit(SHARED, {"kind": "tick"})


def counts(stream) -> list[int]:
    return [
        json.loads(e["data"])["count"] for e in stream.reader.events if e["event"] == "test-count"
    ]


async def until_count(stream, count: int) -> None:
    await stream.reader.until(
        lambda e: e["event"] == "test-count" and json.loads(e["data"])["count"] == count
    )


def test_watch_names_are_plain_words():
    class Bad(CountingWatch):
        event = "x\ndata: y"

    with pytest.raises(ValueError, match="plain words"):
        watches.watch_register(Bad)


async def test_a_watch_is_read_on_connect_then_kept_by_its_keys_events(user):
    CountingWatch.stored = 7
    stream = await Stream(user.pk, None).live()
    try:
        await until_count(stream, 7)
        assert get_hub().local_subscriber_count(SHARED) == 1
        # Read, joined the key, read again (an event between the two would be missed).
        assert CountingWatch.reads == 2
        for _ in range(3):
            await sync_to_async(tick)()
        await until_count(stream, 10)
        assert CountingWatch.reads == 2  # counted locally, no read per event
        assert counts(stream) == sorted(counts(stream))
    finally:
        await stream.disconnect()
    assert get_hub().local_subscriber_count(SHARED) == 0


async def test_a_refresh_on_the_users_key_reads_the_watch_again(user, other_user):
    stream = await Stream(user.pk, None).live()
    other = await Stream(other_user.pk, None).live()
    try:
        await until_count(stream, 0)
        await until_count(other, 0)
        CountingWatch.stored = 42
        await sync_to_async(services.stream_watch_refresh)(user_id=user.pk, event="test-count")
        await until_count(stream, 42)
        await sync_to_async(tick)()
        await until_count(other, 1)  # the other user's stream was not told to read
        await until_count(stream, 43)
        assert counts(other) == [0, 1]
    finally:
        await stream.disconnect()
        await other.disconnect()


async def test_events_during_a_read_are_applied_to_what_it_returns(user, monkeypatch):
    """A tick that arrives while the read runs (on a database thread) is not lost when the
    read's result replaces the stream's state."""
    hub = get_hub()
    runner = watches.WatchRunner(CountingWatch(user.pk), hub, Subscription("stream", 10))

    def read_with_a_tick_meanwhile():
        runner.take({"kind": "tick"})  # as if the hub delivered it during the read
        return 5

    monkeypatch.setattr(runner.watch, "read", read_with_a_tick_meanwhile)
    try:
        await runner.load()
        assert runner.watch.payload() == {"count": 6}
    finally:
        runner.close()
