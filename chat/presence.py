"""Who is online in each chat room, across every server process.

Each process has one ``PresenceTracker`` per event loop (like the hub). It counts its own
sockets per (room, user), so a user with two tabs stays online until both close, and keeps
one entry per (room, user, process) in a store shared by all processes: with
``settings.REDIS_URL`` a Redis sorted set per room of ``"<user_id>|<process token>|<name>"``
scored by expiry (Redis' clock, ms); without it the same in the tracker's memory.

Each change is one atomic step (a Lua script on Redis): apply it, drop expired entries,
compute the sorted online names and compare them with the room's last published list. Only
a step that changes the list publishes, so processes never repeat each other's events. The
``version`` grows with every change and is at least the change's time in µs, so it never
goes back, even after Redis lost the room: clients ignore events older than one applied.

Entries expire after ``CHAT_PRESENCE_TTL_SECONDS``. Every third of it a task re-scores
this process' entries, finishes leaves that failed, and sweeps its rooms: a crashed
process' users drop out within the TTL, and a Redis that restarted empty is refilled.
Nothing raises into a consumer: store errors are logged, callers get this process' view.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
import weakref
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import NamedTuple

from django.conf import settings

from chat.events import room_key
from streamsite.streaming.hub import event_message
from streamsite.streaming.publish import apublish
from streamsite.streaming.redis import LuaScript, get_redis

logger = logging.getLogger(__name__)

#: Rooms refreshed by one script call: bounds how long Redis (and our room locks) are held.
ROOMS_PER_REFRESH = 200
#: How long a room's published list and version outlive the last process that touched it.
STATE_EXPIRY_MS = 3600 * 1000
#: How long ``close()`` waits for events still being published.
PUBLISH_WAIT_SECONDS = 5
#: A process publishes a room's presence at most this often: the changes in between are
#: coalesced into the latest list. Each event goes to every socket of the room, so a room of
#: 1,000 people joining at once would otherwise cost a million frames.
PUBLISH_INTERVAL_SECONDS = 0.5


class RoomPresence(NamedTuple):
    """A room's online usernames (sorted, unique) and the version of that list."""

    online: list[str]
    version: int


def presence_key(room_id: int) -> str:
    """The Redis sorted set of a room's presence entries."""
    return f"streamsite:chat:presence:{int(room_id)}"


def presence_state_key(room_id: int) -> str:
    """The Redis hash of a room's last published list (``online``, JSON) and ``version``."""
    return f"{presence_key(room_id)}:state"


def presence_event(online: list[str], version: int) -> dict:
    """The hub event telling a room's sockets who is online now."""
    return {"kind": "presence", "online": list(online), "version": int(version)}


# Stores ---------------------------------------------------------------------------------

# KEYS: per room, its members key and its state key. ARGV: ttl (ms), state expiry (ms),
# then per room: how many members to add, how many to remove, those members.
# Returns per room: changed (0/1), version, online (a JSON list).
_APPLY = LuaScript("""
local function online_names(members)
  local seen, names = {}, {}
  for _, member in ipairs(members) do
    local name = string.match(member, '^[^|]*|[^|]*|(.*)$')
    if name and not seen[name] then seen[name] = true; names[#names + 1] = name end
  end
  table.sort(names)
  if #names == 0 then return '[]' end  -- cjson would encode an empty table as {}
  return cjson.encode(names)
end
local time = redis.call('TIME')
local now_us = tonumber(time[1]) * 1000000 + tonumber(time[2])
local now = math.floor(now_us / 1000)
local ttl, state_expiry = tonumber(ARGV[1]), tonumber(ARGV[2])
local reply, arg = {}, 3
for room = 1, #KEYS / 2 do
  local members_key, state_key = KEYS[2 * room - 1], KEYS[2 * room]
  local adds, removes = tonumber(ARGV[arg]), tonumber(ARGV[arg + 1])
  arg = arg + 2
  for i = arg, arg + adds - 1 do redis.call('ZADD', members_key, now + ttl, ARGV[i]) end
  arg = arg + adds
  for i = arg, arg + removes - 1 do redis.call('ZREM', members_key, ARGV[i]) end
  arg = arg + removes
  redis.call('ZREMRANGEBYSCORE', members_key, '-inf', now)
  local online = online_names(redis.call('ZRANGE', members_key, 0, -1))
  local last = redis.call('ZRANGE', members_key, -1, -1, 'WITHSCORES')
  if last[2] then redis.call('PEXPIREAT', members_key, tonumber(last[2]) + 1000) end
  local state = redis.call('HMGET', state_key, 'online', 'version')
  local version, changed = tonumber(state[2]) or 0, 0
  if (state[1] or '[]') ~= online then
    version = math.max(version + 1, now_us)
    redis.call('HSET', state_key, 'online', online, 'version', string.format('%d', version))
    changed = 1
  end
  redis.call('PEXPIRE', state_key, state_expiry)
  for _, value in ipairs({changed, version, online}) do reply[#reply + 1] = value end
end
return reply
""")


class _Change(NamedTuple):
    room_id: int
    add: list[str]
    remove: list[str]


@dataclass(slots=True)
class _RedisStore:
    """Presence entries of every process, in Redis."""

    client: object

    async def apply(self, changes: list[_Change], ttl_ms: int) -> list[tuple[bool, RoomPresence]]:
        keys: list[str] = []
        args: list = [ttl_ms, STATE_EXPIRY_MS]
        for change in changes:
            keys += [presence_key(change.room_id), presence_state_key(change.room_id)]
            args += [len(change.add), len(change.remove), *change.add, *change.remove]
        reply = await _APPLY(self.client, keys, args)
        return [
            (bool(reply[i]), RoomPresence(json.loads(reply[i + 2]), int(reply[i + 1])))
            for i in range(0, len(reply), 3)
        ]


class _MemoryStore:
    """The same entries in this process, for the embedded single-process setup."""

    def __init__(self) -> None:
        self._members: dict[int, dict[str, float]] = {}  # room -> member -> expiry (ms)
        self._published: dict[int, RoomPresence] = {}

    async def apply(self, changes: list[_Change], ttl_ms: int) -> list[tuple[bool, RoomPresence]]:
        now = time.time() * 1000
        results = []
        for room_id, add, remove in changes:
            old = self._members.pop(room_id, {})
            members = {m: expiry for m, expiry in old.items() if expiry > now and m not in remove}
            members.update(dict.fromkeys(add, now + ttl_ms))
            if members:
                self._members[room_id] = members
            online = _online_names(members)
            last = self._published.get(room_id, RoomPresence([], 0))
            if changed := last.online != online:
                version = max(last.version + 1, time.time_ns() // 1000)
                last = self._published[room_id] = RoomPresence(online, version)
            results.append((changed, last))
        return results


def _online_names(members) -> list[str]:
    return sorted({member.split("|", 2)[2] for member in members})


# The tracker ----------------------------------------------------------------------------


@dataclass(slots=True)
class _LocalUser:
    """One user's sockets in one room, in this process (0: left, store not told yet)."""

    username: str
    sockets: int = 0


class PresenceTracker:
    """This process' sockets per room, mirrored into the shared store and kept fresh."""

    def __init__(self) -> None:
        client = get_redis()
        self._store = _MemoryStore() if client is None else _RedisStore(client)
        #: Tells this process' entries from other processes' entries for the same user.
        self.token = uuid.uuid4().hex
        self._rooms: dict[int, dict[int, _LocalUser]] = {}
        # Per room, a lock and how many hold or wait for it: one store change per room at a
        # time, made from the local state of its turn, so no change overtakes an older one.
        self._locks: dict[int, list] = {}
        self._to_publish: dict[int, RoomPresence] = {}  # the latest change per room
        self._publisher: asyncio.Task | None = None
        self._refresh_task: asyncio.Task | None = None
        self.closed = False

    async def join(self, room_id: int, user_id: int, username: str) -> RoomPresence:
        """Count one more socket of the user in the room; return who is online now.

        On a store error: this process' view, version 0 (the refresh adds the entry later).
        The socket counts from the call on, even if it is cancelled: always ``leave()``."""
        if self._refresh_task is None and not self.closed:
            self._refresh_task = asyncio.create_task(self._refresh_forever(), name="presence")
        users = self._rooms.setdefault(room_id, {})
        users.setdefault(user_id, _LocalUser(username)).sockets += 1
        try:
            [state] = await self._sync([room_id], user_id)
        except Exception:
            logger.warning("presence join failed in room %s", room_id, exc_info=True)
            return RoomPresence(self._local_online(room_id), 0)
        return state

    async def leave(self, room_id: int, user_id: int) -> None:
        """Count one socket fewer; the user goes offline here when their last one leaves.

        One store round trip; if it fails or is cancelled, the next refresh finishes it.
        """
        local = self._rooms.get(room_id, {}).get(user_id)
        if local is None or local.sockets <= 0:
            return
        local.sockets -= 1
        if local.sockets > 0:
            return
        try:
            await self._sync([room_id], user_id)
        except Exception:
            logger.warning("presence leave failed in room %s", room_id, exc_info=True)

    async def online(self, room_id: int) -> list[str]:
        """The room's online usernames, sorted, after sweeping it (publishing if that changed
        it); this process' own view on a store error."""
        try:
            [state] = await self._sync([room_id])
            return state.online
        except Exception:
            logger.warning("presence read failed in room %s", room_id, exc_info=True)
            return self._local_online(room_id)

    async def refresh(self) -> None:
        """Re-score this process' entries, finish pending leaves, sweep expired entries."""
        rooms = sorted(self._rooms)
        for start in range(0, len(rooms), ROOMS_PER_REFRESH):
            await self._sync(rooms[start : start + ROOMS_PER_REFRESH])

    async def close(self, *, leave: bool = True) -> None:
        """Stop refreshing and, unless ``leave=False`` (a crash, in tests), remove our entries."""
        if self.closed:
            return
        self.closed = True
        if self._refresh_task is not None:
            self._refresh_task.cancel()
            await asyncio.gather(self._refresh_task, return_exceptions=True)
        if leave:
            for users in self._rooms.values():
                for local in users.values():
                    local.sockets = 0
            try:
                await self.refresh()
            except Exception:
                logger.warning("presence could not remove its entries on close", exc_info=True)
        await self.wait_until_published()

    async def wait_until_published(self) -> None:
        """Wait (at most a few seconds) for the events being published (for close, tests)."""
        if self._publisher is not None:
            await asyncio.wait([self._publisher], timeout=PUBLISH_WAIT_SECONDS)

    # Internals -------------------------------------------------------------------------

    def _member(self, user_id: int, username: str) -> str:
        return f"{int(user_id)}|{self.token}|{username}"

    def _local_online(self, room_id: int) -> list[str]:
        users = self._rooms.get(room_id, {}).values()
        return sorted({local.username for local in users if local.sockets > 0})

    def _take_change(self, room_id: int, user_id: int | None) -> _Change:
        """The store change for the room (one user, or all): add (re-score) the users with
        sockets here, remove those without, whom we then forget."""
        users = self._rooms.get(room_id, {})
        chosen = list(users) if user_id is None else [user_id] if user_id in users else []
        change = _Change(room_id, [], [])
        for uid in chosen:
            local = users[uid]
            if local.sockets > 0:
                change.add.append(self._member(uid, local.username))
            else:
                change.remove.append(self._member(uid, local.username))
                del users[uid]
        if not users:
            self._rooms.pop(room_id, None)
        return change

    def _untake_removals(self, change: _Change) -> None:
        """Remember again removals that did not reach the store (unless the user is back)."""
        for member in change.remove:
            uid, _token, username = member.split("|", 2)
            self._rooms.setdefault(change.room_id, {}).setdefault(int(uid), _LocalUser(username))

    async def _sync(self, rooms: list[int], user_id: int | None = None) -> list[RoomPresence]:
        """Bring the store in line with this process for ``rooms``; publish what changed."""
        async with AsyncExitStack() as stack:
            for room_id in rooms:  # sorted, and only refreshes take several: no deadlock
                await stack.enter_async_context(self._room_lock(room_id))
            changes = [self._take_change(room_id, user_id) for room_id in rooms]
            try:
                results = await self._store.apply(changes, _ttl_ms())
            except BaseException:
                for change in changes:
                    self._untake_removals(change)
                raise
        for change, (changed, state) in zip(changes, results, strict=True):
            if changed:
                waiting = self._to_publish.get(change.room_id)
                if waiting is None or waiting.version < state.version:
                    self._to_publish[change.room_id] = state
        if self._to_publish and self._publisher is None:
            # In a task: a join or leave returns after its one round trip, not held by
            # the channel layer. Versions make the order of these events moot.
            self._publisher = asyncio.create_task(self._publish_coalesced())
        return [state for _changed, state in results]

    async def _publish_coalesced(self) -> None:
        """Publish each changed room's latest list, then wait, so the changes of the next
        ``PUBLISH_INTERVAL_SECONDS`` go out as one event per room."""
        try:
            while self._to_publish:
                batch, self._to_publish = self._to_publish, {}
                for room_id, state in batch.items():
                    await self._publish(room_id, state)
                await asyncio.sleep(PUBLISH_INTERVAL_SECONDS)
        finally:
            self._publisher = None

    @asynccontextmanager
    async def _room_lock(self, room_id: int):
        entry = self._locks.get(room_id)
        if entry is None:
            entry = self._locks[room_id] = [asyncio.Lock(), 0]
        entry[1] += 1
        try:
            async with entry[0]:
                yield
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                del self._locks[room_id]

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(settings.CHAT_PRESENCE_TTL_SECONDS / 3)
            try:
                await self.refresh()
            except Exception:
                logger.warning("presence refresh failed; retrying", exc_info=True)

    async def _publish(self, room_id: int, state: RoomPresence) -> None:
        key = room_key(room_id)
        try:
            await apublish(key, event_message(key, presence_event(state.online, state.version)))
        except Exception:
            logger.warning("could not publish presence of room %s", room_id, exc_info=True)


def _ttl_ms() -> int:
    return max(1, round(settings.CHAT_PRESENCE_TTL_SECONDS * 1000))


# One tracker per event loop -------------------------------------------------------------

_trackers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, PresenceTracker] = (
    weakref.WeakKeyDictionary()
)


def get_presence() -> PresenceTracker:
    """Return the presence tracker of the running event loop (one per server process)."""
    loop = asyncio.get_running_loop()
    tracker = _trackers.get(loop)
    if tracker is None or tracker.closed:
        tracker = _trackers[loop] = PresenceTracker()
    return tracker


async def close_presence() -> None:
    """Close the running loop's tracker, removing its entries (for shutdown and tests)."""
    tracker = _trackers.pop(asyncio.get_running_loop(), None)
    if tracker is not None:
        await tracker.close()


async def presence_join(room_id: int, user_id: int, username: str) -> list[str]:
    """One more socket of the user in the room; return the room's online usernames."""
    return (await get_presence().join(room_id, user_id, username)).online


async def presence_leave(room_id: int, user_id: int) -> None:
    """One socket fewer of the user in the room: once per ``presence_join`` call, even one
    that was cancelled or failed."""
    await get_presence().leave(room_id, user_id)


async def presence_online(room_id: int) -> list[str]:
    """The room's online usernames, sorted."""
    return await get_presence().online(room_id)
