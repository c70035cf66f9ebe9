"""Presence events: coalesced when published, put in order when received.

Publishing. Each change a process makes is known only to it (the store answers with the
names that changed), so each process publishes its own: at most one event per room every
``PUBLISH_INTERVAL_SECONDS`` (a big room less often: ``publish_interval``), holding each
changed name once, in its latest state, with the version of that change, plus the room's
latest count and version. A room of 10,000 people joining costs each socket an event every
few seconds of the names that changed, not the list.

Receiving. Two processes' events can arrive in any order: a user who leaves on one process
and comes back on another within the interval must end online. So each process keeps, per
room, the version of the last change it passed on for each name (``RoomViews``) and drops
an older one (last writer wins, by version). That is done once per event and process, when
the hub hands it out, and the frame is built once; a socket then only drops the changes its
own snapshot already holds (``chat.outbox``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import NamedTuple

from chat import protocol
from chat.events import room_key
from streamsite.streaming.hub import event_message
from streamsite.streaming.outage import CHANNEL_LAYER, report_failure
from streamsite.streaming.publish import apublish

logger = logging.getLogger(__name__)

#: A process publishes a room's presence at most this often: the changes in between are
#: coalesced into one event per room.
PUBLISH_INTERVAL_SECONDS = 0.5
#: Each delta costs a frame to every socket of the room: a room of more than
#: ``ROOM_FRAMES_PER_SECOND * PUBLISH_INTERVAL_SECONDS`` people gets its deltas less
#: often, so that they cost its sockets about this many frames a second (per process)...
ROOM_FRAMES_PER_SECOND = 5_000
#: ...but never less often than this (a room of 10,000 while a crowd arrives).
MAX_PUBLISH_INTERVAL_SECONDS = 2.0
#: How long ``close()`` waits for events still being published.
PUBLISH_WAIT_SECONDS = 5
#: A name's last version is remembered this long (µs; versions are Redis' clock in µs):
#: longer than any event can travel (channels-redis drops messages after 60 s).
REMEMBER_VERSIONS_US = 120 * 1_000_000


def delta_event(room_id: int, joined: dict, left: dict, count: int, version: int) -> dict:
    """The hub event of a room's changes: ``joined``/``left`` map each name to the version
    of its change; ``count`` and ``version`` are the room's at the newest of them."""
    return {
        "kind": "presence.delta",
        "room": int(room_id),
        "joined": joined,
        "left": left,
        "count": int(count),
        "version": int(version),
    }


def resync_event(room_id: int, version: int) -> dict:
    """The hub event telling sockets to read the room again (the store had lost it).

    Not a snapshot: one from another process could arrive after deltas newer than it,
    and replace them. A socket's outbox reads the store when it handles this, in its
    order, so what it reads holds every change it applied before."""
    return {"kind": "presence.resync", "room": int(room_id), "version": int(version)}


class _Pending:
    """One room's changes waiting for the next publish."""

    __slots__ = ("changes", "count", "resync", "version")

    def __init__(self) -> None:
        self.changes: dict[str, tuple[bool, int]] = {}  # name -> (online, version)
        self.count = 0
        self.version = 0
        self.resync: dict | None = None

    def events(self, room_id: int) -> list[dict]:
        events = [] if self.resync is None else [self.resync]
        if self.changes:
            joined = {name: v for name, (online, v) in self.changes.items() if online}
            left = {name: v for name, (online, v) in self.changes.items() if not online}
            events.append(delta_event(room_id, joined, left, self.count, self.version))
        return events


def publish_interval(count: int) -> float:
    """How long a room of ``count`` people waits between two of a process' deltas.

    While 10,000 sockets join one room, each delta goes to every socket already in it: at
    two deltas a second that was a third of the server's event loop (py-spy,
    docs/benchmarks.md); the names still arrive, a little later, in fewer frames."""
    by_size = count / ROOM_FRAMES_PER_SECOND
    return min(MAX_PUBLISH_INTERVAL_SECONDS, max(PUBLISH_INTERVAL_SECONDS, by_size))


class Coalescer:
    """Collect a process' presence changes and publish them per room, a few a second."""

    def __init__(self) -> None:
        self._pending: dict[int, _Pending] = {}
        # When each room that published lately may publish again (the event loop's clock).
        self._next_at: dict[int, float] = {}
        self._task: asyncio.Task | None = None

    def changed(self, room_id: int, joined, left, count: int, version: int) -> None:
        pending = self._pending.get(room_id)
        if pending is None:
            pending = self._pending[room_id] = _Pending()
        changes = pending.changes
        for names, online in ((joined, True), (left, False)):
            for name in names:
                known = changes.get(name)
                if known is None or known[1] < version:
                    changes[name] = (online, version)
        if version > pending.version:
            pending.count, pending.version = count, version
        self._start()

    def reset(self, room_id: int, version: int) -> None:
        """The store lost the room: sockets read it again, older changes are moot."""
        pending = self._pending[room_id] = _Pending()
        pending.resync = resync_event(room_id, version)
        self._start()

    async def wait(self) -> None:
        """Wait (at most a few seconds) for the events being published."""
        if self._task is not None:
            await asyncio.wait([self._task], timeout=PUBLISH_WAIT_SECONDS)

    def _start(self) -> None:
        if self._task is None:
            # In a task: a join or leave returns after its round trip, not held by the
            # channel layer. Versions make the order of these events moot.
            self._task = asyncio.create_task(self._publish_coalesced(), name="presence-publish")

    def take_due(self, now: float) -> dict[int, _Pending]:
        """The rooms whose changes go out at ``now``: those whose interval since their
        last event (``publish_interval``) has passed, and any with a resync (at once)."""
        next_at = self._next_at
        due = {}
        for room_id in list(self._pending):
            pending = self._pending[room_id]
            if pending.resync is not None or now >= next_at.get(room_id, now):
                due[room_id] = self._pending.pop(room_id)
                next_at[room_id] = now + publish_interval(pending.count)
        for room_id in [room for room, at in next_at.items() if at <= now]:
            del next_at[room_id]  # quiet since: its next change goes out at once
        return due

    async def _publish_coalesced(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                for room_id, pending in self.take_due(loop.time()).items():
                    for event in pending.events(room_id):
                        await _publish(room_id, event)
                await asyncio.sleep(PUBLISH_INTERVAL_SECONDS)
        finally:
            self._task = None


async def _publish(room_id: int, event: dict) -> None:
    key = room_key(room_id)
    try:
        await apublish(key, event_message(key, event))
    except Exception as error:
        report_failure(CHANNEL_LAYER, "presence publishes", error, logger)


# Receiving ------------------------------------------------------------------------------


class Accepted(NamedTuple):
    """A delta event as this process passes it on: only changes newer than those it passed
    before, each ``(name, version)``, sorted by name; the frame with all of them."""

    joined: list[tuple[str, int]]
    left: list[tuple[str, int]]
    since: int  # the oldest change's version
    count: int
    version: int
    send: dict  # the ASGI message of the frame, shared by the room's sockets


def delta_send(accepted: Accepted | None, floor: int) -> dict | None:
    """The ASGI message of an accepted delta for a socket whose snapshot has version
    ``floor``: only the changes the snapshot lacks; None if it lacks none."""
    if accepted is None or accepted.version <= floor:
        return None
    if accepted.since > floor:
        return accepted.send  # the usual case: the frame shared by the room's sockets
    # This socket connected while the delta was being coalesced.
    joined = [name for name, version in accepted.joined if version > floor]
    left = [name for name, version in accepted.left if version > floor]
    if not joined and not left:
        return None
    frame = protocol.presence_delta_frame(joined, left, accepted.count, accepted.version)
    return protocol.websocket_send(frame)


class _View:
    __slots__ = ("count", "seen", "version")

    def __init__(self) -> None:
        self.seen: dict[str, int] = {}
        self.count = 0
        self.version = 0


class RoomViews:
    """Per room, the last version of each name this process passed on (see the module)."""

    def __init__(self) -> None:
        self._views: dict[int, _View] = {}

    def accept(self, event: dict) -> Accepted | None:
        """``event`` without what is stale, once per event (the result is kept on it)."""
        accepted = event.get("_accepted", False)
        if accepted is not False:
            return accepted
        view = self._views.get(event["room"])
        if view is None:
            view = self._views[event["room"]] = _View()
        seen = view.seen
        joined = sorted((n, v) for n, v in event["joined"].items() if seen.get(n, -1) < v)
        left = sorted((n, v) for n, v in event["left"].items() if seen.get(n, -1) < v)
        for name, version in (*joined, *left):
            seen[name] = version
        if event["version"] > view.version:
            view.count, view.version = event["count"], event["version"]
        accepted = None
        if joined or left:  # else every change was superseded, the count with them
            frame = protocol.presence_delta_frame(
                [name for name, _ in joined], [name for name, _ in left], view.count, view.version
            )
            since = min(version for _, version in (*joined, *left))
            accepted = Accepted(
                joined, left, since, view.count, view.version, protocol.websocket_send(frame)
            )
        event["_accepted"] = accepted
        return accepted

    def forget(self, room_id: int) -> None:
        """No socket of this process is in the room any more."""
        self._views.pop(room_id, None)

    def prune(self) -> None:
        """Forget versions too old for any event still on its way to matter."""
        for view in self._views.values():
            cutoff = view.version - REMEMBER_VERSIONS_US
            if any(version < cutoff for version in view.seen.values()):
                view.seen = {name: v for name, v in view.seen.items() if v >= cutoff}
