"""Room presence: who is online, per tab and per process, and the events a room receives.

The first tests run on the backend the settings choose (in-process without REDIS_URL,
Redis with it). The ones about several processes, crashes and cancelled calls need Redis
whatever the settings say, and use a database of their own: two trackers on one loop are
two processes sharing that Redis.
"""

import asyncio
import contextlib
import json
import secrets
import time
import uuid
from collections import deque
from contextlib import asynccontextmanager

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from chat.events import room_key
from chat.presence import (
    PresenceTracker,
    close_presence,
    get_presence,
    presence_event,
    presence_join,
    presence_key,
    presence_leave,
    presence_online,
    presence_state_key,
)
from streamsite.streaming.hub import event_message
from streamsite.streaming.publish import apublish
from streamsite.streaming.redis import close_redis, get_redis
from streamsite.testing.services import skip_or_fail

pytestmark = [pytest.mark.timeout(10), pytest.mark.usefixtures("channel_layer")]

#: A database of these tests' own, for tests that need Redis whatever the settings say.
DEDICATED_URL = "redis://127.0.0.1:6379/13"
#: A short TTL (refresh every 0.1 s) so expiry tests take a fraction of a second.
SHORT_TTL = 0.3


class PresenceEvents:
    """The presence events a room's sockets receive, read through a hub subscription."""

    def __init__(self, subscription, room_id: int) -> None:
        self.subscription = subscription
        self.key = room_key(room_id)
        self._pending: deque[dict] = deque()

    async def next(self, seconds: float = 3) -> dict:
        """The next presence event; fail if none arrives within ``seconds``."""
        deadline = time.monotonic() + seconds
        while not self._pending:
            remaining = deadline - time.monotonic()
            assert remaining > 0, "no presence event arrived in time"
            if await self.subscription.wait(remaining):
                self._pending.extend(self.subscription.take())
        event = self._pending.popleft()
        assert json.loads(json.dumps(event)) == event  # it crossed (or could cross) Redis
        return event

    async def wait_for(self, online: list[str], seconds: float = 3) -> dict:
        """Skip events until one says exactly ``online`` is online; return it."""
        deadline = time.monotonic() + seconds
        while (event := await self.next(deadline - time.monotonic()))["online"] != online:
            pass
        return event

    async def published(self, *trackers: PresenceTracker) -> list[dict]:
        """Every presence event the trackers have published so far (and not yet read).

        A marker sent after their publishing is done arrives after their events.
        """
        for tracker in trackers:
            await tracker.wait_until_published()
        marker = {"kind": "test.marker", "id": uuid.uuid4().hex}
        await apublish(self.key, event_message(self.key, marker))
        events = []
        while (event := await self.next()) != marker:
            events.append(event)
        return events


@pytest.fixture
async def room_ids(settings):
    """Fresh room ids (``room_ids()``); the trackers are closed and the rooms' Redis keys
    deleted after the test. Random and large, so runs sharing a Redis never meet."""
    used: list[int] = []

    def new_id() -> int:
        used.append(10**9 + secrets.randbelow(10**9))
        return used[-1]

    yield new_id
    await close_presence()
    client = get_redis()
    if client is not None and used:
        keys = [
            key for room_id in used for key in (presence_key(room_id), presence_state_key(room_id))
        ]
        with contextlib.suppress(RedisConnectionError, OSError):  # a Redis not there
            await client.delete(*keys)
    await close_redis()


@pytest.fixture
async def make_tracker(room_ids):
    """Start trackers of one's own (processes of one's own); closed after the test, before
    the rooms' keys are deleted."""
    started: list[PresenceTracker] = []

    def make() -> PresenceTracker:
        started.append(PresenceTracker())
        return started[-1]

    yield make
    for tracker in started:
        await tracker.close()


@pytest.fixture
async def dedicated_redis(settings):
    """Point the settings at a Redis database of these tests' own (skip or fail if none)."""
    settings.REDIS_URL = DEDICATED_URL
    settings.CHAT_PRESENCE_TTL_SECONDS = SHORT_TTL
    try:
        await get_redis().ping()
    except (RedisConnectionError, OSError):
        await close_redis()
        skip_or_fail(f"Redis is unreachable at {DEDICATED_URL}")


@pytest.fixture
def watch_room(hub):
    """``async with watch_room(room_id) as events``: the room's events, as a socket gets them."""

    @asynccontextmanager
    async def watch(room_id: int):
        async with hub.subscribe(room_key(room_id), maxsize=1000) as subscription:
            yield PresenceEvents(subscription, room_id)

    return watch


def test_presence_event_carries_the_sorted_names_and_version():
    event = presence_event(("alice", "bob"), 7)
    assert event == {"kind": "presence", "online": ["alice", "bob"], "version": 7}
    assert json.loads(json.dumps(event)) == event


# On the backend the settings choose ---------------------------------------------------


async def test_join_returns_who_is_online_and_publishes_the_change(room_ids, watch_room):
    room = room_ids()
    async with watch_room(room) as events:
        assert await presence_join(room, 1, "bob") == ["bob"]
        first = await events.next()
        assert first == {"kind": "presence", "online": ["bob"], "version": first["version"]}
        assert await presence_join(room, 2, "alice") == ["alice", "bob"]
        second = await events.next()
        assert second["online"] == ["alice", "bob"]
        assert second["version"] > first["version"]
        assert await presence_online(room) == ["alice", "bob"]


async def test_join_reports_the_version_of_the_list_it_returns(room_ids, watch_room):
    """A consumer can start from the join's version and ignore older events."""
    room = room_ids()
    async with watch_room(room) as events:
        joined = await get_presence().join(room, 1, "alice")
        assert (await events.next())["version"] == joined.version
        again = await get_presence().join(room, 2, "bob")
        assert again.version > joined.version


async def test_reading_a_room_nobody_is_in_publishes_nothing(room_ids, watch_room):
    room = room_ids()
    async with watch_room(room) as events:
        assert await presence_online(room) == []
        assert await events.published(get_presence()) == []


async def test_a_user_with_two_tabs_stays_online_until_both_close(room_ids, watch_room):
    room = room_ids()
    tracker = get_presence()
    async with watch_room(room) as events:
        assert await presence_join(room, 1, "alice") == ["alice"]
        joined = await events.next()
        assert await presence_join(room, 1, "alice") == ["alice"]
        await presence_leave(room, 1)
        assert await presence_online(room) == ["alice"]
        assert await events.published(tracker) == []  # the second tab changed nothing

        await presence_leave(room, 1)
        left = await events.next()
        assert left["online"] == []
        assert left["version"] > joined["version"]
        assert await presence_online(room) == []


async def test_a_leave_without_a_join_changes_nothing(room_ids, watch_room):
    room = room_ids()
    async with watch_room(room) as events:
        await presence_join(room, 1, "alice")
        await events.next()
        await presence_leave(room, 2)
        await presence_leave(room, 1)
        await presence_leave(room, 1)  # one too many
        assert [event["online"] for event in await events.published(get_presence())] == [[]]
    assert await presence_join(room, 1, "alice") == ["alice"]  # still counts from zero


async def test_rooms_are_independent(room_ids):
    lobby, kitchen = room_ids(), room_ids()
    await presence_join(lobby, 1, "alice")
    assert await presence_join(kitchen, 2, "bob") == ["bob"]
    await presence_leave(lobby, 1)
    assert await presence_online(lobby) == []
    assert await presence_online(kitchen) == ["bob"]


async def test_a_name_holding_the_separator_is_kept_whole(room_ids):
    room = room_ids()
    assert await presence_join(room, 1, "a|b|c") == ["a|b|c"]
    assert await presence_online(room) == ["a|b|c"]


async def test_closing_the_tracker_takes_its_users_offline(room_ids, watch_room):
    """Shutdown: this process' users leave at once, not after the TTL."""
    room = room_ids()
    async with watch_room(room) as events:
        await presence_join(room, 1, "alice")
        await presence_join(room, 2, "bob")
        await events.wait_for(["alice", "bob"])
        await close_presence()
        await events.wait_for([])
    assert await presence_online(room) == []  # read through a new tracker


# Several processes, crashes and cancellations: Redis ----------------------------------

needs_redis = pytest.mark.usefixtures("dedicated_redis")


@needs_redis
async def test_processes_share_presence_and_publish_each_change_once(
    room_ids, make_tracker, watch_room
):
    room = room_ids()
    first, second = make_tracker(), make_tracker()
    async with watch_room(room) as events:
        assert (await first.join(room, 1, "alice")).online == ["alice"]
        assert (await second.join(room, 1, "alice")).online == ["alice"]
        assert (await second.join(room, 2, "bob")).online == ["alice", "bob"]
        await first.leave(room, 1)  # alice is still online through the second process
        assert await first.online(room) == ["alice", "bob"]
        await second.leave(room, 1)
        published = await events.published(first, second)
    # Events may arrive out of order (they are published concurrently): versions order them.
    published.sort(key=lambda event: event["version"])
    assert [event["online"] for event in published] == [["alice"], ["alice", "bob"], ["bob"]]
    assert len({event["version"] for event in published}) == 3


@needs_redis
async def test_a_crashed_process_drops_out_within_the_ttl(room_ids, make_tracker, watch_room):
    room = room_ids()
    crashing, surviving = make_tracker(), make_tracker()
    async with watch_room(room) as events:
        await crashing.join(room, 1, "alice")
        await surviving.join(room, 2, "bob")
        await events.wait_for(["alice", "bob"])
        await crashing.close(leave=False)  # no leave reaches Redis: as if killed
        crashed_at = time.monotonic()
        await events.wait_for(["bob"], seconds=3)
    # Gone after at most a TTL plus a refresh period of the survivor (and slack for a busy CI).
    assert time.monotonic() - crashed_at < SHORT_TTL * 4 / 3 + 0.6
    assert await surviving.online(room) == ["bob"]


@needs_redis
async def test_a_live_process_keeps_its_users_online(room_ids, make_tracker):
    room = room_ids()
    live, other = make_tracker(), make_tracker()
    await live.join(room, 1, "alice")
    await asyncio.sleep(SHORT_TTL * 3)  # three TTLs: every entry would have expired unrefreshed
    assert await other.online(room) == ["alice"]


@needs_redis
async def test_a_room_lost_by_redis_is_refilled(room_ids, make_tracker, watch_room):
    """A Redis that restarts empty: the refresh puts the room back, with a newer version."""
    room = room_ids()
    tracker = make_tracker()
    async with watch_room(room) as events:
        await tracker.join(room, 1, "alice")
        before = await events.next()
        await get_redis().delete(presence_key(room), presence_state_key(room))
        after = await events.wait_for(["alice"])
    assert after["version"] > before["version"]
    assert await tracker.online(room) == ["alice"]


@needs_redis
async def test_a_cancelled_leave_is_finished_by_the_refresh(room_ids, make_tracker):
    """A consumer's disconnect can be cancelled mid-leave; the user still goes offline."""
    room = room_ids()
    tracker, other = make_tracker(), make_tracker()
    await tracker.join(room, 1, "alice")
    # Bob's join holds the room's turn, so alice's leave is waiting when it is cancelled.
    joining = asyncio.create_task(tracker.join(room, 2, "bob"))
    leaving = asyncio.create_task(tracker.leave(room, 1))
    await asyncio.sleep(0)
    leaving.cancel()
    await joining
    with pytest.raises(asyncio.CancelledError):
        await leaving
    assert await other.online(room) == ["alice", "bob"]
    await tracker.refresh()
    assert await other.online(room) == ["bob"]


@needs_redis
async def test_a_cancelled_join_counts_until_its_leave(room_ids, make_tracker):
    """The socket counts from the call on: a consumer leaves for every join it started."""
    room = room_ids()
    tracker, other = make_tracker(), make_tracker()
    joining_bob = asyncio.create_task(tracker.join(room, 2, "bob"))
    joining_alice = asyncio.create_task(tracker.join(room, 1, "alice"))  # waits for bob's
    await asyncio.sleep(0)
    joining_alice.cancel()
    assert (await joining_bob).online == ["bob"]
    with pytest.raises(asyncio.CancelledError):
        await joining_alice
    await tracker.refresh()  # what the cancelled join did not write, the refresh does
    assert await other.online(room) == ["alice", "bob"]
    await tracker.leave(room, 1)
    assert await other.online(room) == ["bob"]


@needs_redis
async def test_versions_grow_even_when_redis_forgot_the_room(room_ids, make_tracker):
    room = room_ids()
    tracker = make_tracker()
    first = await tracker.join(room, 1, "alice")
    await get_redis().delete(presence_state_key(room))
    second = await tracker.join(room, 2, "bob")
    assert second.version > first.version


async def test_redis_down_gives_this_process_view_and_never_raises(
    settings, room_ids, make_tracker, caplog
):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    room = room_ids()
    tracker = make_tracker()
    assert (await tracker.join(room, 1, "alice")).online == ["alice"]
    assert (await tracker.join(room, 2, "bob")).online == ["alice", "bob"]
    await tracker.leave(room, 2)
    assert await tracker.online(room) == ["alice"]
    assert "presence join failed" in caplog.text
    assert "presence leave failed" in caplog.text
