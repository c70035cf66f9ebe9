"""Where presence entries live: Redis (shared by every process) or this process' memory.

A room's presence is three things, each kept so that one change costs O(log n), whatever
the room's size:

- the entries: one per (room, user, process), ``"<user_id>|<process token>|<name>"``,
  scored by expiry (Redis' clock, ms). Sweeping expired ones costs O(expired).
- the online names: a set kept sorted (a Redis sorted set of equal scores, read by
  lexical range), so a page of 100 names after a given one costs O(log n + 100), and the
  count is its cardinality.
- the state: the room's ``version`` and, per name, how many entries hold it (two tabs on
  two processes are two entries): a name comes online when its count goes from 0 to 1 and
  goes offline when it falls back to 0.

``apply`` runs a batch of changes for several rooms in one step (one Lua script on Redis)
and answers, per room, only what changed (``joined``, ``left``), the count, the version
and the pages asked for: never the whole room. The version grows with every change and is
at least the change's time in µs, so it never goes back, even after Redis lost the room.
A room whose state is missing while it has someone online was lost (a Redis restarted
empty, an evicted key) or is new: the step wipes what is left of it and says ``reset``,
and the tracker then re-adds its users and tells every socket to read the room again.
"""

from __future__ import annotations

import bisect
import heapq
import time
from dataclasses import dataclass, field
from typing import NamedTuple

from streamsite.streaming.redis import LuaScript

#: Names in a page of the online list (the snapshot on connect, each ``presence.more``).
PAGE_SIZE = 100
#: How long a room's keys outlive the last process that touched it (ms); the refresh
#: touches them every third of the TTL, so only abandoned rooms expire.
STATE_EXPIRY_MS = 3600 * 1000


class Change(NamedTuple):
    """What one process asks of one room in a step."""

    room_id: int
    add: list[str]  # entries to add or re-score
    remove: list[str]  # entries to remove
    pages: list[str]  # page requests: names after this one ("" for the first page)


class Page(NamedTuple):
    names: list[str]
    more: bool


class RoomResult(NamedTuple):
    """A step's answer for one room: only what changed, plus the count and version."""

    version: int
    count: int
    joined: list[str]
    left: list[str]
    pages: dict[str, Page]
    #: The room's state was missing (lost, or new): what sockets know may be stale.
    reset: bool = False


def presence_key(room_id: int) -> str:
    """The Redis sorted set of a room's entries, scored by expiry."""
    return f"streamsite:chat:presence:{int(room_id)}"


def presence_online_key(room_id: int) -> str:
    """The Redis sorted set (equal scores: sorted by name) of a room's online names."""
    return f"{presence_key(room_id)}:online"


def presence_state_key(room_id: int) -> str:
    """The Redis hash of a room's ``v`` (version) and ``n:<name>`` (entries per name)."""
    return f"{presence_key(room_id)}:state"


def name_of(member: str) -> str:
    return member.split("|", 2)[2]


# KEYS: per room its entries, online and state keys. ARGV: ttl (ms), key expiry (ms), page
# size, then per room: how many entries to add, to remove, pages asked; those entries; the
# pages' "after" names. Reply per room: version, count, joined, left, pages (each a list of
# names and more 0/1, in the order asked), reset (1: the room's state was missing).
_APPLY = LuaScript("""
local function name_of(member) return string.match(member, '^[^|]*|[^|]*|(.*)$') end
local time = redis.call('TIME')
local now_us = tonumber(time[1]) * 1000000 + tonumber(time[2])
local now = math.floor(now_us / 1000)
local ttl, expiry, size = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local function page(online, after)
  local low = '-'
  if after ~= '' then low = '(' .. after end
  local names = redis.call('ZRANGEBYLEX', online, low, '+', 'LIMIT', 0, size + 1)
  local more = 0
  if #names > size then names[#names] = nil; more = 1 end
  return {names, more}
end
local reply, arg = {}, 4
for room = 1, #KEYS / 3 do
  local entries, online, state = KEYS[3 * room - 2], KEYS[3 * room - 1], KEYS[3 * room]
  local adds, removes, pages = tonumber(ARGV[arg]), tonumber(ARGV[arg + 1]), tonumber(ARGV[arg + 2])
  arg = arg + 3
  local version = tonumber(redis.call('HGET', state, 'v'))
  local lost = not version
  if lost then redis.call('DEL', entries, online, state); version = 0 end
  -- Per name touched: its state before the step (online?) and after; order of first touch.
  local before, after, order = {}, {}, {}
  local function moved(name, is_online)
    if before[name] == nil then before[name] = not is_online; order[#order + 1] = name end
    after[name] = is_online
  end
  local function drop(member)
    if redis.call('ZREM', entries, member) == 1 then
      local name = name_of(member)
      if redis.call('HINCRBY', state, 'n:' .. name, -1) <= 0 then
        redis.call('HDEL', state, 'n:' .. name)
        redis.call('ZREM', online, name)
        moved(name, false)
      end
    end
  end
  for _, member in ipairs(redis.call('ZRANGEBYSCORE', entries, '-inf', now)) do drop(member) end
  for i = arg + adds, arg + adds + removes - 1 do drop(ARGV[i]) end
  for i = arg, arg + adds - 1 do
    if redis.call('ZADD', entries, now + ttl, ARGV[i]) == 1 then
      local name = name_of(ARGV[i])
      if redis.call('HINCRBY', state, 'n:' .. name, 1) == 1 then
        redis.call('ZADD', online, 0, name)
        moved(name, true)
      end
    end
  end
  arg = arg + adds + removes
  local joined, left = {}, {}
  for _, name in ipairs(order) do
    if after[name] ~= before[name] then
      if after[name] then joined[#joined + 1] = name else left[#left + 1] = name end
    end
  end
  local count = redis.call('ZCARD', online)
  local reset = 0
  if lost and count == 0 then
    version = 0  -- nothing to restore: leave the room unknown until someone is back
  elseif lost or #joined + #left > 0 then
    version = math.max(version + 1, now_us)
    redis.call('HSET', state, 'v', string.format('%d', version))
    if lost then reset = 1 end
  end
  local answers = {}
  for i = arg, arg + pages - 1 do answers[#answers + 1] = page(online, ARGV[i]) end
  arg = arg + pages
  redis.call('PEXPIRE', entries, expiry)
  redis.call('PEXPIRE', online, expiry)
  redis.call('PEXPIRE', state, expiry)
  reply[#reply + 1] = {string.format('%d', version), count, joined, left, answers, reset}
end
return reply
""")


@dataclass(slots=True)
class RedisStore:
    """Presence entries of every process, in Redis."""

    client: object

    async def apply(self, changes: list[Change], ttl_ms: int) -> list[RoomResult]:
        keys: list[str] = []
        args: list = [ttl_ms, STATE_EXPIRY_MS, PAGE_SIZE]
        for change in changes:
            room = change.room_id
            keys += [presence_key(room), presence_online_key(room), presence_state_key(room)]
            args += [len(change.add), len(change.remove), len(change.pages)]
            args += [*change.add, *change.remove, *change.pages]
        reply = await _APPLY(self.client, keys, args)
        results = []
        for change, (version, count, joined, left, answers, reset) in zip(
            changes, reply, strict=True
        ):
            pages = {
                after: Page(names, bool(more))
                for after, (names, more) in zip(change.pages, answers, strict=True)
            }
            results.append(
                RoomResult(
                    int(version),
                    int(count),
                    joined,
                    left,
                    pages,
                    bool(reset),
                )
            )
        return results


@dataclass(slots=True)
class _MemoryRoom:
    entries: dict[str, float] = field(default_factory=dict)  # entry -> expiry (ms)
    expiries: list[tuple[float, str]] = field(default_factory=list)  # a heap, lazily pruned
    holders: dict[str, int] = field(default_factory=dict)  # name -> entries holding it
    online: list[str] = field(default_factory=list)  # sorted
    version: int = 0

    def page(self, after: str) -> Page:
        start = bisect.bisect_right(self.online, after) if after else 0
        names = self.online[start : start + PAGE_SIZE + 1]
        return Page(names[:PAGE_SIZE], len(names) > PAGE_SIZE)


class MemoryStore:
    """The same in this process, for the embedded single-process setup."""

    def __init__(self) -> None:
        self._rooms: dict[int, _MemoryRoom] = {}

    async def apply(self, changes: list[Change], ttl_ms: int) -> list[RoomResult]:
        now = time.time() * 1000
        return [self._apply(change, now, ttl_ms) for change in changes]

    def _apply(self, change: Change, now: float, ttl_ms: int) -> RoomResult:
        room = self._rooms.get(change.room_id)
        lost = room is None
        if lost:
            room = self._rooms[change.room_id] = _MemoryRoom()
        before: dict[str, bool] = {}
        after: dict[str, bool] = {}

        def moved(name: str, is_online: bool) -> None:
            before.setdefault(name, not is_online)
            after[name] = is_online

        def drop(member: str) -> None:
            if room.entries.pop(member, None) is None:
                return
            name = name_of(member)
            room.holders[name] -= 1
            if room.holders[name] <= 0:
                del room.holders[name]
                del room.online[bisect.bisect_left(room.online, name)]
                moved(name, False)

        expiries = room.expiries
        while expiries and expiries[0][0] <= now:
            expiry, member = heapq.heappop(expiries)
            if room.entries.get(member) == expiry:  # else re-scored since: a stale heap item
                drop(member)
        for member in change.remove:
            drop(member)
        for member in change.add:
            is_new = member not in room.entries
            room.entries[member] = now + ttl_ms
            heapq.heappush(expiries, (now + ttl_ms, member))
            if is_new:
                name = name_of(member)
                room.holders[name] = room.holders.get(name, 0) + 1
                if room.holders[name] == 1:
                    bisect.insort(room.online, name)
                    moved(name, True)
        if len(expiries) > 2 * len(room.entries) + 64:  # re-scores leave stale items behind
            room.expiries = [(expiry, member) for member, expiry in room.entries.items()]
            heapq.heapify(room.expiries)
        joined = [name for name, is_online in after.items() if is_online and not before[name]]
        left = [name for name, is_online in after.items() if not is_online and before[name]]
        reset = False
        if lost and not room.online:
            del self._rooms[change.room_id]  # nothing to restore: stays unknown
        elif lost or joined or left:
            room.version = max(room.version + 1, time.time_ns() // 1000)
            reset = lost
        pages = {after_name: room.page(after_name) for after_name in change.pages}
        return RoomResult(room.version, len(room.online), joined, left, pages, reset)
