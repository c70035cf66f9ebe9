"""This process' side of presence: its sockets per room, mirrored into the shared store.

Each process has one ``PresenceTracker`` per event loop (like the hub). It counts its own
sockets per (room, user), so a user with two tabs stays online until both close, and keeps
one entry per (room, user, process) in the store (``chat.presence.store``).

Changes go to the store in group commits: one task sends, one round trip at a time, every
room's changes queued since the last one (up to ``ROOMS_PER_CALL`` rooms and about
``ENTRIES_PER_CALL`` entries a trip). 10,000 sockets joining a room at once cost a dozen
round trips, not 10,000 serial ones under a room lock, and a room's changes are sent in
order by the one task. A caller waits for the trip
that carried its change and gets that trip's answer.

Entries expire after ``CHAT_PRESENCE_TTL_SECONDS``. Every third of it the tracker re-sends
all its entries (re-scoring them, finishing leaves that failed, sweeping expired entries):
a crashed process' users drop out within the TTL, and a Redis that restarted empty is
refilled. Nothing raises into a consumer: store errors are logged, callers get this
process' view (version 0).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import uuid
from dataclasses import dataclass
from typing import NamedTuple

from django.conf import settings

from chat.presence.events import Coalescer, RoomViews
from chat.presence.store import PAGE_SIZE, Change, MemoryStore, RedisStore, RoomResult
from streamsite.streaming.outage import SHARED_REDIS, report_failure
from streamsite.streaming.redis import get_redis

logger = logging.getLogger(__name__)

#: Rooms and entries sent in one round trip: bound how long one script call holds Redis
#: (10,000 new entries take about 0.3 s; 1,000 about 30 ms).
ROOMS_PER_CALL = 200
ENTRIES_PER_CALL = 1000


class PresencePage(NamedTuple):
    """Up to ``PAGE_SIZE`` online names (sorted) of a room, the room's count, whether more
    names follow, and the version all of it is true at (0: this process' view only)."""

    online: list[str]
    count: int
    more: bool
    version: int


@dataclass(slots=True)
class _LocalUser:
    """One user's sockets in one room, in this process (0: left, store not told yet)."""

    username: str
    sockets: int = 0


class _Request:
    """What the next round trip must do for one room, and its answer."""

    __slots__ = ("done", "pages", "users")

    def __init__(self) -> None:
        self.users: set[int] | None = set()  # None: every local user of the room
        self.pages: set[str] = set()
        self.done: asyncio.Future[RoomResult] = asyncio.get_running_loop().create_future()


class PresenceTracker:
    """This process' sockets per room, mirrored into the shared store and kept fresh."""

    def __init__(self) -> None:
        client = get_redis()
        self._store = MemoryStore() if client is None else RedisStore(client)
        #: Tells this process' entries from other processes' entries for the same user.
        self.token = uuid.uuid4().hex
        self._rooms: dict[int, dict[int, _LocalUser]] = {}
        self._queued: dict[int, _Request] = {}
        self._sender: asyncio.Task | None = None
        self._refresh_task: asyncio.Task | None = None
        self._coalescer = Coalescer()
        #: The received side: what this process passed on to its sockets, per room.
        self.views = RoomViews()
        #: Store round trips made (for tests and benchmarks).
        self.round_trips = 0
        self.closed = False

    async def join(self, room_id: int, user_id: int, username: str) -> PresencePage:
        """Count one more socket of the user in the room; return the room's first page.

        The socket counts from the call on, even if it is cancelled: always ``leave()``."""
        if self._refresh_task is None and not self.closed:
            self._refresh_task = asyncio.create_task(self._refresh_forever(), name="presence")
        users = self._rooms.setdefault(room_id, {})
        users.setdefault(user_id, _LocalUser(username)).sockets += 1
        request = self._queue(room_id, user_id)
        request.pages.add("")
        try:
            return _page(await asyncio.shield(request.done), "")
        except Exception as error:
            report_failure(SHARED_REDIS, "presence joins", error, logger)
            return self._local_page(room_id, "")

    async def leave(self, room_id: int, user_id: int) -> None:
        """Count one socket fewer; the user goes offline here when their last one leaves.

        The change is queued at once: it is made even if this call is cancelled, and if the
        round trip fails, the next refresh makes it."""
        local = self._rooms.get(room_id, {}).get(user_id)
        if local is None or local.sockets <= 0:
            return
        local.sockets -= 1
        if local.sockets > 0:
            return
        request = self._queue(room_id, user_id)
        try:
            await asyncio.shield(request.done)
        except Exception as error:
            report_failure(SHARED_REDIS, "presence leaves", error, logger)

    async def page(self, room_id: int, after: str = "") -> PresencePage:
        """Up to ``PAGE_SIZE`` online names after ``after`` ("": from the start), sorted;
        this process' view on a store error."""
        request = self._queue(room_id)
        request.pages.add(after)
        try:
            return _page(await asyncio.shield(request.done), after)
        except Exception as error:
            report_failure(SHARED_REDIS, "presence reads", error, logger)
            return self._local_page(room_id, after)

    async def online(self, room_id: int) -> list[str]:
        """Every online name of the room, sorted, page by page (for tests and tools)."""
        names, after = [], ""
        while True:
            page = await self.page(room_id, after)
            names += page.online
            if not page.more or not page.online:
                return names
            after = page.online[-1]

    async def refresh(self) -> None:
        """Re-send every entry of this process, finishing pending leaves and sweeping."""
        self.views.prune()
        requests = []
        for room_id in list(self._rooms):
            request = self._queue(room_id)
            request.users = None
            requests.append(request)
        for outcome in await asyncio.gather(
            *(asyncio.shield(request.done) for request in requests), return_exceptions=True
        ):
            if isinstance(outcome, BaseException):
                raise outcome

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
        await self._coalescer.wait()

    # Round trips -----------------------------------------------------------------------

    def _queue(self, room_id: int, user_id: int | None = None) -> _Request:
        """The room's request in the next round trip (started if none is under way),
        syncing ``user_id`` too if given."""
        request = self._queued.get(room_id)
        if request is None:
            request = self._queued[room_id] = _Request()
        if user_id is not None and request.users is not None:
            request.users.add(user_id)
        if self._sender is None:
            self._sender = asyncio.create_task(self._send_queued(), name="presence-store")
        return request

    async def _send_queued(self) -> None:
        """Send what is queued, one round trip at a time, until nothing is."""
        try:
            while self._queued:
                changes, requests = self._take_batch()
                try:
                    results = await self._store.apply(changes, _ttl_ms())
                except BaseException as error:
                    for change in changes:
                        self._untake_removals(change)
                    for request in requests:
                        if request is not None:
                            _fail(request.done, error)
                    if not isinstance(error, Exception):
                        raise  # cancelled: the loop is closing
                    continue
                self.round_trips += 1
                for change, request, result in zip(changes, requests, results, strict=True):
                    self._applied(change.room_id, result)
                    if request is not None:
                        request.done.set_result(result)
        finally:
            self._sender = None

    def _take_batch(self) -> tuple[list[Change], list[_Request | None]]:
        """The next round trip: queued rooms, up to ``ROOMS_PER_CALL`` of them and about
        ``ENTRIES_PER_CALL`` entries. A room with more goes in several trips (its request
        stays queued, None here, and is answered by the last)."""
        changes, requests = [], []
        budget = ENTRIES_PER_CALL
        for room_id in list(itertools.islice(self._queued, ROOMS_PER_CALL)):
            if budget <= 0:
                break
            request = self._queued[room_id]
            change = self._take_change(room_id, request, budget)
            budget -= len(change.add) + len(change.remove)
            finished = not request.users
            if finished:
                del self._queued[room_id]
            changes.append(change if finished else change._replace(pages=[]))
            requests.append(request if finished else None)
        return changes, requests

    def _take_change(self, room_id: int, request: _Request, limit: int) -> Change:
        """The store change for up to ``limit`` requested users of the room: add (re-score)
        those who have sockets here, remove those without, whom we then forget."""
        users = self._rooms.get(room_id, {})
        if request.users is None:
            request.users = set(users)
        change = Change(room_id, [], [], sorted(request.pages))
        chosen = request.users
        for _ in range(min(limit, len(chosen))):
            user_id = chosen.pop()
            local = users.get(user_id)
            if local is None:
                continue
            if local.sockets > 0:
                change.add.append(self._member(user_id, local.username))
            else:
                change.remove.append(self._member(user_id, local.username))
                del users[user_id]
        if not users and self._rooms.pop(room_id, None) is not None:
            self.views.forget(room_id)
        return change

    def _untake_removals(self, change: Change) -> None:
        """Remember again removals that did not reach the store (unless the user is back)."""
        for member in change.remove:
            user_id, _token, username = member.split("|", 2)
            self._rooms.setdefault(change.room_id, {}).setdefault(
                int(user_id), _LocalUser(username)
            )

    def _applied(self, room_id: int, result: RoomResult) -> None:
        """Publish what the store says changed."""
        if result.reset:
            # The store had lost the room (or it is new): put all our users back (the
            # others' refreshes do the same), and have every socket read the room again.
            if room_id in self._rooms:
                self._queue(room_id).users = None
            self._coalescer.reset(room_id, result.version)
        elif result.joined or result.left:
            self._coalescer.changed(
                room_id, result.joined, result.left, result.count, result.version
            )

    # Helpers ---------------------------------------------------------------------------

    def _member(self, user_id: int, username: str) -> str:
        return f"{int(user_id)}|{self.token}|{username}"

    def _local_page(self, room_id: int, after: str) -> PresencePage:
        users = self._rooms.get(room_id, {}).values()
        online = sorted({local.username for local in users if local.sockets > 0})
        names = [name for name in online if name > after]
        return PresencePage(names[:PAGE_SIZE], len(online), len(names) > PAGE_SIZE, 0)

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(settings.CHAT_PRESENCE_TTL_SECONDS / 3)
            try:
                await self.refresh()
            except Exception as error:
                report_failure(SHARED_REDIS, "presence refreshes (retried)", error, logger)
            else:
                SHARED_REDIS.succeeded()


def _page(result: RoomResult, after: str) -> PresencePage:
    page = result.pages[after]
    return PresencePage(page.names, result.count, page.more, result.version)


def _fail(future: asyncio.Future, error: BaseException) -> None:
    if isinstance(error, Exception):
        future.set_exception(error)
        future.exception()  # retrieved: a caller that was cancelled leaves it unread
    else:
        future.cancel()


def _ttl_ms() -> int:
    return max(1, round(settings.CHAT_PRESENCE_TTL_SECONDS * 1000))
