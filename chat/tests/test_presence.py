"""Room presence: who is online, per tab and per process, and the events a room receives.

The first tests run on the backend the settings choose (in-process without REDIS_URL,
Redis with it). The ones about several processes, crashes and cancelled calls need Redis
whatever the settings say, and use a database of their own: two trackers on one loop are
two processes sharing that Redis.
"""

import asyncio
import contextlib
import json
import logging
import secrets
import time
import uuid
from collections import deque
from contextlib import asynccontextmanager

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from chat.events import room_key
from chat.presence import (
    PAGE_SIZE,
    PresenceTracker,
    close_presence,
    delta_event,
    get_presence,
    presence_join,
    presence_key,
    presence_leave,
    presence_online,
    presence_online_key,
    presence_state_key,
)
from chat.presence.events import (
    PUBLISH_INTERVAL_SECONDS,
    Coalescer,
    RoomViews,
    publish_interval,
)
from chat.presence.store import Change, MemoryStore, RedisStore
from streamsite.streaming.hub import event_message
from streamsite.streaming.outage import SHARED_REDIS
from streamsite.streaming.publish import apublish
from streamsite.streaming.redis import close_redis, get_redis
from streamsite.testing.services import skip_or_fail

pytestmark = [pytest.mark.timeout(10), pytest.mark.usefixtures("channel_layer")]

#: A database of these tests' own, for tests that need Redis whatever the settings say.
DEDICATED_URL = "redis://127.0.0.1:6379/13"
#: A short TTL (refresh every 0.1 s) so expiry tests take a fraction of a second.
SHORT_TTL = 0.3
PRESENCE_KINDS = ("presence.resync", "presence.delta")


class RoomModel:
    """What a socket knows of a room: a snapshot, then the deltas, as chat.outbox and the
    browser apply them (changes not newer than the snapshot are left out)."""

    def __init__(self, page=None) -> None:
        self.names = set(page.online) if page else set()
        self.floor = page.version if page else -1
        self.count = page.count if page else 0
        self.views = RoomViews()  # this "process'" order of the deltas

    async def read_again(self, room_id: int) -> None:
        """A ``presence.resync``: read the room from the store now (every page: a client
        knows the names after the first page only once it asks for them)."""
        first = await get_presence().page(room_id)
        if first.version > self.floor:
            self.floor, self.count = first.version, first.count
            self.names = set(await get_presence().online(room_id))

    def apply(self, event: dict) -> None:
        accepted = self.views.accept(dict(event))
        if accepted is None or accepted.version <= self.floor:
            return
        self.names |= {name for name, version in accepted.joined if version > self.floor}
        self.names -= {name for name, version in accepted.left if version > self.floor}
        self.count = accepted.count


class PresenceEvents:
    """The presence events a room's sockets receive, read through a hub subscription."""

    def __init__(self, subscription, room_id: int) -> None:
        self.subscription = subscription
        self.key = room_key(room_id)
        self._pending: deque[dict] = deque()
        self.model = RoomModel()
        self.read: list[dict] = []  # every event read, in order

    async def next(self, seconds: float = 3) -> dict:
        """The next presence event; fail if none arrives within ``seconds``."""
        deadline = time.monotonic() + seconds
        while not self._pending:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no presence event arrived in time; read: {self.read}"
            if await self.subscription.wait(remaining):
                self._pending.extend(self.subscription.take())
        event = self._pending.popleft()
        self.read.append(event)
        assert json.loads(json.dumps(event)) == event  # it crossed (or could cross) Redis
        if event.get("kind") == "presence.delta":
            self.model.apply(event)
        elif event.get("kind") == "presence.resync" and event["version"] > self.model.floor:
            await self.model.read_again(event["room"])
        return event

    async def wait_for(self, online: list[str], seconds: float = 3) -> None:
        """Read events until the room's model says exactly ``online``."""
        deadline = time.monotonic() + seconds
        while sorted(self.model.names) != online:
            await self.next(deadline - time.monotonic())

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


def changed_names(event: dict) -> set[str]:
    return set(event["joined"]) | set(event["left"])


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
            key(room_id)
            for room_id in used
            for key in (presence_key, presence_online_key, presence_state_key)
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


def test_a_delta_event_maps_each_changed_name_to_its_version():
    event = delta_event(7, {"bob": 12}, {"carol": 11}, 41, 12)
    assert event == {
        "kind": "presence.delta",
        "room": 7,
        "joined": {"bob": 12},
        "left": {"carol": 11},
        "count": 41,
        "version": 12,
    }
    assert json.loads(json.dumps(event)) == event


def test_a_change_older_than_one_passed_on_is_dropped():
    """Carol leaves on one process and is back on another: whichever event arrives last,
    she ends online, and the count is the newest."""
    left = delta_event(1, {}, {"carol": 10}, 1, 10)
    back = delta_event(1, {"carol": 11, "dave": 11}, {}, 2, 11)
    model = RoomModel()
    model.apply(back)
    model.apply(left)
    assert model.names == {"carol", "dave"}
    assert model.count == 2
    in_order = RoomModel()
    in_order.apply(left)
    in_order.apply(back)
    assert in_order.names == {"carol", "dave"}


def test_a_socket_drops_the_changes_its_snapshot_holds():
    views = RoomViews()
    accepted = views.accept(delta_event(1, {"bob": 12, "dave": 14}, {"carol": 10}, 5, 14))
    assert [name for name, _ in accepted.joined] == ["bob", "dave"]
    assert accepted.since == 10
    assert json.loads(accepted.send["text"]) == {
        "type": "presence.delta",
        "joined": ["bob", "dave"],
        "left": ["carol"],
        "count": 5,
        "version": 14,
    }


def test_a_big_room_s_deltas_go_out_less_often_a_small_room_s_as_before():
    """Each delta is a frame to every socket of the room: a room of 10,000 gets one every
    2 s (``publish_interval``), one of 20 every 0.5 s; nothing is dropped, only held."""
    coalescer = Coalescer()
    coalescer._start = lambda: None  # no task: the test calls take_due with its own clock
    coalescer.changed(1, ["a"], [], 10_000, 1)
    coalescer.changed(2, ["b"], [], 20, 1)
    assert sorted(coalescer.take_due(100.0)) == [1, 2]  # first changes: at once
    coalescer.changed(1, ["c"], [], 10_001, 2)
    coalescer.changed(2, ["d"], [], 21, 2)
    assert list(coalescer.take_due(100.5)) == [2]
    coalescer.changed(1, ["e"], ["c"], 10_001, 3)
    assert coalescer.take_due(101.5) == {}
    (held,) = coalescer.take_due(102.0).values()  # 2 s after its last
    (event,) = held.events(1)
    assert (event["joined"], event["left"], event["count"]) == ({"e": 3}, {"c": 3}, 10_001)
    assert publish_interval(20) == PUBLISH_INTERVAL_SECONDS == 0.5
    assert publish_interval(5_000) == 1.0 and publish_interval(1_000_000) == 2.0


def test_a_quiet_room_s_next_change_goes_out_at_once_and_a_resync_never_waits():
    coalescer = Coalescer()
    coalescer._start = lambda: None
    coalescer.changed(1, ["a"], [], 10_000, 1)
    assert list(coalescer.take_due(100.0)) == [1]
    coalescer.reset(1, 2)  # the store lost the room
    assert list(coalescer.take_due(100.1)) == [1]
    coalescer.changed(1, ["b"], [], 10_000, 3)
    assert list(coalescer.take_due(103.0)) == [1]  # quiet for longer than its interval
    assert coalescer._next_at == {1: 105.0}


# The store: each change is answered with that change --------------------------------------


@pytest.fixture
def store(settings, room_ids):
    """The store the settings choose (Redis with REDIS_URL, else in memory)."""

    def make():
        client = get_redis()
        return MemoryStore() if client is None else RedisStore(client)

    return make


def _entry(user_id: int, name: str) -> str:
    return f"{user_id}|token|{name}"


async def test_the_store_answers_a_change_with_only_that_change(store, room_ids):
    """One join in a room of 300 costs that join: the answer names only the newcomer
    (and the count), not the room; no page is read unless asked for."""
    room, store = room_ids(), store()
    everyone = [_entry(n, f"user{n:03d}") for n in range(300)]
    [filled] = await store.apply([Change(room, everyone, [], [])], 30_000)
    assert filled.count == 300 and len(filled.joined) == 300

    [joined] = await store.apply([Change(room, [_entry(999, "zoe")], [], [])], 30_000)
    assert (joined.joined, joined.left, joined.count, joined.pages) == (["zoe"], [], 301, {})
    assert joined.version > filled.version

    [again] = await store.apply([Change(room, [_entry(999, "zoe")], [], [])], 30_000)
    assert (again.joined, again.left, again.count, again.version) == ([], [], 301, joined.version)

    [left] = await store.apply([Change(room, [], [_entry(5, "user005")], [])], 30_000)
    assert (left.joined, left.left, left.count) == ([], ["user005"], 300)


async def test_the_store_pages_the_sorted_names(store, room_ids):
    room, store = room_ids(), store()
    names = sorted(f"u{secrets.token_hex(4)}" for _ in range(250))
    entries = [_entry(n, name) for n, name in enumerate(names)]
    [result] = await store.apply([Change(room, entries, [], ["", names[99], names[199]])], 30_000)
    assert result.pages[""] == (names[:100], True)
    assert result.pages[names[99]] == (names[100:200], True)
    assert result.pages[names[199]] == (names[200:], False)


# On the backend the settings choose ---------------------------------------------------


async def test_join_returns_the_first_page_and_publishes_only_the_change(room_ids, watch_room):
    room = room_ids()
    async with watch_room(room) as events:
        bob = await presence_join(room, 1, "bob")
        assert (bob.online, bob.count, bob.more) == (["bob"], 1, False)
        first = await events.next()
        assert first["kind"] in PRESENCE_KINDS and first["version"] == bob.version
        alice = await presence_join(room, 2, "alice")
        assert (alice.online, alice.count) == (["alice", "bob"], 2)
        assert alice.version > bob.version
        second = await events.next()
        assert second == {
            "kind": "presence.delta",
            "room": room,
            "joined": {"alice": alice.version},
            "left": {},
            "count": 2,
            "version": alice.version,
        }
        assert await presence_online(room) == ["alice", "bob"]


async def test_the_first_page_is_capped_and_paging_returns_every_name_once(room_ids):
    room, tracker = room_ids(), get_presence()
    names = [f"user{n:03d}" for n in range(250)]
    await asyncio.gather(*(tracker.join(room, n, name) for n, name in enumerate(names)))
    first = await tracker.page(room)
    assert len(first.online) == PAGE_SIZE and first.more and first.count == 250
    seen, page = list(first.online), first
    while page.more:
        page = await tracker.page(room, seen[-1])
        assert page.count == 250 and page.version == first.version
        seen += page.online
    assert seen == names


async def test_many_joins_share_a_few_round_trips(room_ids):
    """Group commit: 300 sockets joining at once are not 300 serial store round trips."""
    room, tracker = room_ids(), get_presence()
    pages = await asyncio.gather(*(tracker.join(room, n, f"user{n:03d}") for n in range(300)))
    assert tracker.round_trips <= 5
    assert max(page.count for page in pages) == 300
    assert len(await presence_online(room)) == 300


async def test_a_crowd_too_big_for_one_round_trip_goes_in_several(room_ids, monkeypatch):
    """A round trip holds about ENTRIES_PER_CALL entries (it holds Redis meanwhile); the
    joiners are answered once all of them are in."""
    monkeypatch.setattr("chat.presence.tracker.ENTRIES_PER_CALL", 50)
    room, tracker = room_ids(), get_presence()
    pages = await asyncio.gather(*(tracker.join(room, n, f"user{n:03d}") for n in range(300)))
    assert 6 <= tracker.round_trips <= 8
    assert {page.count for page in pages} == {300}
    assert len(await presence_online(room)) == 300


async def test_changes_within_an_interval_go_out_as_one_event_of_the_changes(room_ids, watch_room):
    """Coalesced: each name once, in its last state, with the latest count."""
    room, tracker = room_ids(), get_presence()
    await presence_join(room, 1, "alice")
    async with watch_room(room) as events:
        await events.published(tracker)
        for n in range(20):
            await presence_join(room, 10 + n, f"user{n:02d}")
        await presence_leave(room, 10)
        await presence_leave(room, 1)
        published = await events.published(tracker)
    assert 1 <= len(published) <= 3  # the window may split them, never one per change
    for event in published:
        assert set(event["joined"]).isdisjoint(event["left"])
    # 22 changes; a name carried once per event (an event split by the window may hold
    # user00's join and the next its leave).
    assert sum(len(changed_names(event)) for event in published) <= 22
    assert published[-1]["count"] == 19
    assert events.model.names == {f"user{n:02d}" for n in range(1, 20)}


async def test_reading_a_room_nobody_is_in_publishes_nothing(room_ids, watch_room):
    room = room_ids()
    async with watch_room(room) as events:
        assert await presence_online(room) == []
        assert await events.published(get_presence()) == []


async def test_a_user_with_two_tabs_stays_online_until_both_close(room_ids, watch_room):
    room = room_ids()
    tracker = get_presence()
    async with watch_room(room) as events:
        assert (await presence_join(room, 1, "alice")).online == ["alice"]
        joined = await events.next()
        assert (await presence_join(room, 1, "alice")).online == ["alice"]
        await presence_leave(room, 1)
        assert await presence_online(room) == ["alice"]
        assert await events.published(tracker) == []  # the second tab changed nothing

        await presence_leave(room, 1)
        left = await events.next()
        assert (left["joined"], list(left["left"]), left["count"]) == ({}, ["alice"], 0)
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
        published = await events.published(get_presence())
        assert [list(event["left"]) for event in published] == [["alice"]]
    assert (await presence_join(room, 1, "alice")).online == ["alice"]  # counts from zero


async def test_rooms_are_independent(room_ids):
    lobby, kitchen = room_ids(), room_ids()
    await presence_join(lobby, 1, "alice")
    assert (await presence_join(kitchen, 2, "bob")).online == ["bob"]
    await presence_leave(lobby, 1)
    assert await presence_online(lobby) == []
    assert await presence_online(kitchen) == ["bob"]


async def test_a_name_holding_the_separator_is_kept_whole(room_ids):
    room = room_ids()
    assert (await presence_join(room, 1, "a|b|c")).online == ["a|b|c"]
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
async def test_processes_share_presence_and_their_deltas_converge(
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
        # Many changes on both at once, some names moving from one process to the other.
        await asyncio.gather(
            *(first.join(room, 100 + n, f"u{n:03d}") for n in range(0, 120, 2)),
            *(second.join(room, 100 + n, f"u{n:03d}") for n in range(1, 120, 2)),
        )
        await asyncio.gather(*(first.leave(room, 100 + n) for n in range(0, 120, 4)))
        await asyncio.gather(*(second.join(room, 100 + n, f"u{n:03d}") for n in range(0, 40, 4)))
        await second.leave(room, 1)
        published = await events.published(first, second)
    truth = await first.online(room)
    assert events.model.names == set(truth)
    assert events.model.count == len(truth)
    assert "alice" not in truth and "bob" in truth
    for event in published:  # no event repeats the room
        if event["kind"] == "presence.delta":
            assert len(changed_names(event)) <= 120


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
async def test_a_room_lost_by_redis_is_refilled_and_read_again(room_ids, make_tracker, watch_room):
    """A Redis that restarts empty: the refreshes put the room back, and sockets read it
    again, dropping whoever left meanwhile (no delta could tell them)."""
    room = room_ids()
    tracker, other, crashing = make_tracker(), make_tracker(), make_tracker()
    async with watch_room(room) as events:
        await tracker.join(room, 1, "alice")
        await other.join(room, 2, "bob")
        await crashing.join(room, 3, "carol")
        await events.wait_for(["alice", "bob", "carol"])
        before = events.read[-1]
        await crashing.close(leave=False)
        await get_redis().delete(
            presence_key(room), presence_online_key(room), presence_state_key(room)
        )
        resync = await events.next()
        while resync["kind"] != "presence.resync":
            resync = await events.next()
        await events.wait_for(["alice", "bob"])
    assert resync["version"] > before["version"]
    assert await tracker.online(room) == ["alice", "bob"]


@needs_redis
async def test_a_cancelled_leave_is_still_made(room_ids, make_tracker):
    """A consumer's disconnect can be cancelled mid-leave; the user still goes offline."""
    room = room_ids()
    tracker, other = make_tracker(), make_tracker()
    await tracker.join(room, 1, "alice")
    await tracker.join(room, 2, "bob")
    leaving = asyncio.create_task(tracker.leave(room, 1))
    await asyncio.sleep(0)
    leaving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leaving
    assert await other.online(room) == ["bob"]


@needs_redis
async def test_a_failed_leave_is_finished_by_the_refresh(room_ids, make_tracker, settings):
    room = room_ids()
    tracker, other = make_tracker(), make_tracker()
    await tracker.join(room, 1, "alice")
    client = tracker._store.client
    tracker._store.client = get_redis().__class__.from_url("redis://127.0.0.1:1/0")
    await tracker.leave(room, 1)  # logged, not raised
    await tracker._store.client.aclose()
    tracker._store.client = client
    assert await other.online(room) == ["alice"]
    await tracker.refresh()
    assert await other.online(room) == []


@needs_redis
async def test_a_cancelled_join_counts_until_its_leave(room_ids, make_tracker):
    """The socket counts from the call on: a consumer leaves for every join it started."""
    room = room_ids()
    tracker, other = make_tracker(), make_tracker()
    joining = asyncio.create_task(tracker.join(room, 1, "alice"))
    await asyncio.sleep(0)
    joining.cancel()
    with pytest.raises(asyncio.CancelledError):
        await joining
    assert await other.online(room) == ["alice"]
    await tracker.leave(room, 1)
    assert await other.online(room) == []


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
    # One warning for the outage (streamsite.streaming.outage), the rest counted.
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "is unreachable" in warnings[0], warnings
    assert "in presence joins" in warnings[0]
    assert SHARED_REDIS.down
