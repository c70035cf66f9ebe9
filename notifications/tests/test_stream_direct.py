"""Live notifications written by the hub while the stream waits (``DirectDelivery``).

The stream is driven as Django's ASGI handler drives it, with a stand-in for the
connection that ``ChunkWriter`` writes to under uvicorn (``notifications.tests.streaming``);
``streamsite/tests/test_http_chunks.py`` runs the writer against the real server, and the
live tests of ``test_stream_http.py`` run the whole path on uvicorn.
"""

import asyncio

import pytest
from asgiref.sync import sync_to_async

from notifications import services, streams
from notifications.events import created_event, read_event, user_key
from notifications.tests.streaming import Stream
from streamsite.streaming.hub import get_hub
from streamsite.streaming.keepalive import Keepalives

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("channel_layer", "close_the_hub"),
]

create = sync_to_async(services.notification_create)

#: Ids no row has: events the test hands to the stream itself, in one go.
FAR = 10**12


@pytest.fixture(autouse=True)
def no_keepalives(settings):
    settings.SSE_KEEPALIVE_SECONDS = 30


def hand_over(user, events: list[dict]) -> None:
    """Give ``events`` to the user's stream as the hub's dispatch does, one after the
    other with nothing in between (the stream's task cannot run meanwhile)."""
    (subscription,) = get_hub()._keys[user_key(user.pk)].subscriptions
    for event in events:
        if subscription.direct is None or not subscription.direct(event):
            subscription.push(event)


def is_notification(notification_id: int):
    """A predicate for ``StreamReader.until``: the ``notification`` event with this id."""
    return lambda e: e["event"] == "notification" and e["id"] == str(notification_id)


def notification(notification_id: int, title: str) -> dict:
    return {
        "id": notification_id,
        "title": title,
        "body": "",
        "url": "",
        "level": "info",
        "created_at": "2026-12-03T10:00:00+00:00",
        "read": False,
    }


async def test_a_waiting_stream_gets_live_notifications_written_directly(user):
    stream = await Stream(user.pk, 0, direct=True).live()
    created = [(await create(recipient=user, title=f"n{n}")).pk for n in range(3)]
    await stream.reader.until(is_notification(created[-1]))
    assert stream.reader.notification_ids() == created
    assert stream.writer.writes == 3  # each notification with its unread count, one write
    assert stream.reader.last("unread") == {"count": 3}
    await stream.disconnect()


async def test_a_connection_under_flow_control_gets_them_through_the_stream(user):
    stream = await Stream(user.pk, 0, direct=True).live()
    stream.writer.open = False  # the client is slow: the stream's own send waits for it
    held = [(await create(recipient=user, title=f"held {n}")).pk for n in range(2)]
    await stream.reader.until(is_notification(held[-1]))
    assert stream.writer.writes == 0

    stream.writer.open = True
    later = await create(recipient=user, title="later")
    await stream.reader.until(is_notification(later.pk))
    assert stream.reader.notification_ids() == [*held, later.pk]
    assert stream.writer.writes == 1
    await stream.disconnect()


async def test_events_keep_their_order_around_one_the_stream_handles_itself(user):
    """A ``read`` event is the stream's to handle: what follows it waits its turn."""
    stream = await Stream(user.pk, None, direct=True).live()
    first, second = FAR + 1, FAR + 2
    hand_over(
        user,
        [
            created_event(notification(first, "first"), unread=1),
            read_event(ids=[first], up_to=None, unread=0),
            created_event(notification(second, "second"), unread=1, previous=first),
        ],
    )
    await stream.reader.until(is_notification(second))
    kinds = [event["event"] for event in stream.reader.events]
    assert kinds[kinds.index("notification") :] == [
        "notification",
        "unread",
        "read",
        "unread",
        "notification",
        "unread",
    ]
    assert stream.writer.writes == 1  # only the first: the rest queued behind the read
    await stream.disconnect()


async def test_a_notification_that_overtook_another_is_not_written_directly(user):
    """Its ``previous`` was not sent: the stream reads the database first, in its task."""
    stream = await Stream(user.pk, None, direct=True).live()
    hand_over(user, [created_event(notification(FAR + 2, "overtaking"), 1, previous=FAR + 1)])
    event = await stream.reader.until(lambda e: e["event"] == "notification")
    assert event["id"] == str(FAR + 2)
    assert stream.writer.writes == 0
    await stream.disconnect()


async def test_a_redelivered_notification_is_dropped_on_the_direct_path_too(user):
    stream = await Stream(user.pk, 0, direct=True).live()
    sent = await create(recipient=user, title="once")
    await stream.reader.until(lambda e: e["event"] == "notification")
    hand_over(user, [created_event(notification(sent.pk, "once"), unread=1)])
    marker = FAR + 5
    hand_over(user, [created_event(notification(marker, "after"), unread=2, previous=sent.pk)])
    await stream.reader.until(is_notification(marker))
    assert stream.reader.notification_ids() == [sent.pk, marker]
    await stream.disconnect()


async def test_the_events_of_one_hub_step_are_written_at_once(user):
    """A batch of messages handed out in one step costs one write per stream."""
    stream = await Stream(user.pk, None, direct=True).live()
    ids = [FAR + 1, FAR + 2, FAR + 3]
    hand_over(
        user,
        [
            created_event(notification(ids[0], "one"), unread=1),
            created_event(notification(ids[1], "two"), unread=2, previous=ids[0]),
            created_event(notification(ids[2], "three"), unread=3, previous=ids[1]),
        ],
    )
    await stream.reader.until(is_notification(ids[-1]))
    assert stream.reader.notification_ids() == ids
    assert stream.writer.writes == 1
    assert stream.reader.last("unread") == {"count": 3}
    await stream.disconnect()


async def test_what_could_not_be_written_goes_out_through_the_stream_first(user):
    """The connection stopped taking writes between the hand-over and the write: the
    stream sends the rendered bytes itself, before the event buffered after them."""
    stream = await Stream(user.pk, None, direct=True).live()
    first = FAR + 1
    hand_over(
        user,
        [
            created_event(notification(first, "first"), unread=1),
            read_event(ids=[first], up_to=None, unread=0),
        ],
    )
    stream.writer.open = False  # before the step's write runs
    await stream.reader.until(lambda e: e["event"] == "read")
    kinds = [event["event"] for event in stream.reader.events]
    assert kinds[kinds.index("notification") :] == ["notification", "unread", "read", "unread"]
    assert stream.writer.writes == 0
    await stream.disconnect()


async def test_a_waiting_stream_gets_its_keepalives_written_without_waking(user, settings):
    """Under uvicorn the keepalive sweep writes the comment to the connection: the stream
    waits without a timer (``streamsite.streaming.keepalive``)."""
    settings.SSE_KEEPALIVE_SECONDS = 1
    stream = await Stream(user.pk, None, direct=True).live()
    (subscription,) = get_hub()._keys[user_key(user.pk)].subscriptions
    for written in (1, 2):
        assert await stream.reader.next_chunk() == b": keepalive\n\n"
        assert stream.writer.writes == written
        assert subscription.parked()  # the comment went out while the stream waited
    await stream.disconnect()
    assert not Keepalives._by_loop  # the last stream gone, the sweep forgets the loop


async def test_a_keepalive_under_flow_control_goes_through_the_stream(user, settings):
    settings.SSE_KEEPALIVE_SECONDS = 1
    stream = await Stream(user.pk, None, direct=True).live()
    stream.writer.open = False  # a slow client: only the stream's own send may wait
    assert await stream.reader.next_chunk() == b": keepalive\n\n"
    assert stream.writer.writes == 0
    await stream.disconnect()


async def test_what_the_stream_yields_itself_puts_off_the_sweeps_keepalive(user, settings):
    """The sweep reckons from the stream's last write, its own yields included."""
    settings.SSE_KEEPALIVE_SECONDS = 30
    stream = await Stream(user.pk, None, direct=True).live()
    (subscription,) = get_hub()._keys[user_key(user.pk)].subscriptions
    handed_over_at = asyncio.get_running_loop().time()
    hand_over(user, [read_event(ids=[FAR + 1], up_to=None, unread=0)])  # the stream's own
    await stream.reader.until(lambda e: e["event"] == "read")
    # The consumer took the chunk and resumed the stream, which parked again, in one step.
    assert subscription.parked()
    assert subscription.direct.written_at >= handed_over_at
    assert stream.writer.writes == 0
    await stream.disconnect()


async def test_a_stream_gone_while_its_watches_start_ends_quietly(user, monkeypatch):
    """Cancelled before it went live (Django cancels on disconnect): nothing to undo, and
    no error out of its cleanup."""
    entered = asyncio.Event()

    async def start_and_wait(self):
        entered.set()
        await asyncio.Event().wait()  # until cancelled

    monkeypatch.setattr(streams.Watching, "start", start_and_wait)
    stream = Stream(user.pk, None, direct=True)
    async with asyncio.timeout(10):
        await entered.wait()
    await stream.disconnect()  # raises the stream's own error instead, if it had one
    assert not Keepalives._by_loop
