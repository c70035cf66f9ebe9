"""Other apps' per-user state that follows shared keys (``event: chat-unread``, say).

Extras (``notifications.extras``) are events sent to one user. Some state a user watches
changes with events sent to many: a message in a chat room changes the unread count of
each of its members. Publishing one event per member would cost a room of 10,000 members
10,000 channel-layer messages per message. Instead each notification stream follows the
shared keys itself (the user's rooms), through the process' hub: one group membership per
process and key, one channel-layer message per process and event. An app's ``Watch``
turns those events into the user's state, locally when it can and with a bounded query
when it cannot, and the stream sends that state at most once every
``WATCH_INTERVAL_SECONDS``, the latest value only (a slow reader skips values, never
falls behind).

The events of the watched keys never enter the stream's buffer: the hub hands each one to
``WatchFeed.direct`` (a dictionary update, no task wake), and only the first change since
the last send wakes the stream. The app's ``Watch`` is given a ``refresh`` on the user's
own key (``notifications.services.stream_watch_refresh``) when something the shared keys
do not carry changed (the user read a room, joined one): the stream reads it again.

notifications knows no app: an app registers its ``Watch`` class in ``AppConfig.ready``.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable

from streamsite.streaming.db import db_call
from streamsite.streaming.sse import encode_json_event
from streamsite.streaming.subscription import RESYNC, Subscription

logger = logging.getLogger(__name__)

#: The least time between two sends of one watch's state on one stream.
WATCH_INTERVAL_SECONDS = 1.0

#: Pushed into the stream's own subscription when a watch has something to send.
WATCH_CHANGED = object()


class Watch:
    """One stream's copy of an app's state for one user; an app subclasses it.

    The stream calls ``read`` on its database threads (synchronous, bounded), then
    ``replace`` on the event loop with what it returned; ``take`` for every event of the
    keys ``replace`` returned (on the event loop, per event: cheap, no I/O); ``payload``
    when it sends. ``stale`` asks the stream to ``read`` again before the next send.
    """

    #: The SSE event name (a word, with dashes: ``chat-unread``).
    event = ""

    def __init__(self, user_id: int) -> None:
        self.user_id = user_id
        self.stale = True

    def read(self):
        """Read the user's state from the database (runs on a database thread)."""
        raise NotImplementedError

    def replace(self, snapshot) -> set[str]:
        """Take the state ``read`` returned; return the hub keys to follow."""
        raise NotImplementedError

    def take(self, event: dict) -> bool:
        """Apply an event of a followed key; True if the payload may have changed.

        Set ``stale`` for an event that cannot be applied locally."""
        raise NotImplementedError

    def payload(self) -> dict:
        """The JSON payload of the SSE event, as things stand."""
        raise NotImplementedError


_watches: list[Callable[[int], Watch]] = []


def watch_register(watch: Callable[[int], Watch]) -> None:
    """Have every notification stream run ``watch(user_id)`` (a ``Watch`` subclass)."""
    if not watch.event.replace("-", "_").isidentifier():
        raise ValueError(f"watch event names are plain words, not {watch.event!r}")
    if watch not in _watches:
        _watches.append(watch)


def watch_refresh_event(event: str) -> dict:
    """The user-key event that makes the user's streams read the ``event`` watch again."""
    return {"kind": "watch.refresh", "event": str(event)}


class WatchFeed(Subscription):
    """The hub subscription of one watch's keys: every event goes to ``take``, unbuffered."""

    __slots__ = ("runner",)

    def __init__(self, runner: WatchRunner) -> None:
        super().__init__(f"watch:{runner.watch.event}", 1)
        self.runner = runner
        self.direct = runner.take

    def push(self, item) -> None:
        # Only RESYNC comes this way (``direct`` takes every event): events may be lost.
        if item is RESYNC:
            self.runner.resync()


class WatchRunner:
    """One watch on one stream: its keys, its feed, when it last sent and what."""

    def __init__(self, watch: Watch, hub, stream_events: Subscription) -> None:
        self.watch = watch
        self.hub = hub
        self.stream_events = stream_events
        self.feed = WatchFeed(self)
        self.keys: set[str] = set()
        self.changed = True  # the first payload goes out as soon as it is read
        self.signalled = False
        self.sent_at = -math.inf
        self.sent: dict | None = None
        # Events taken while a read is in flight: applied again to what it returns.
        self.during_read: list[dict] | None = None

    def take(self, event: dict) -> bool:
        """The hub's direct delivery: apply the event; never buffered (returns True)."""
        if self.during_read is not None:
            self.during_read.append(event)
        try:
            changed = self.watch.take(event)
        except Exception:
            # Raised into the hub, it would cut the event off from the key's other
            # subscribers: log it, and read the state again instead.
            logger.exception(
                "the %s watch could not take a %r event", self.watch.event, event.get("kind")
            )
            self.watch.stale = True
            changed = True
        if changed or self.watch.stale:
            self._changed()
        return True

    def resync(self) -> None:
        """Events of the keys may have been lost: read again."""
        self.watch.stale = True
        self._changed()

    def refresh(self) -> None:
        """The user's state changed where the keys do not say (``watch.refresh``)."""
        self.resync()

    def _changed(self) -> None:
        self.changed = True
        if not self.signalled:
            self.signalled = True
            self.stream_events.push(WATCH_CHANGED)  # one wake per send, not per event

    def due_in(self, now: float) -> float | None:
        """Seconds until this watch may send, None if it has nothing new."""
        if not self.changed:
            return None
        return max(0.0, self.sent_at + WATCH_INTERVAL_SECONDS - now)

    async def flush(self, now: float) -> bytes:
        """The SSE event if the watch changed, may send now and differs from the last sent."""
        due = self.due_in(now)
        if due is None or due > 0:
            return b""
        self.changed = False
        self.signalled = False
        if self.watch.stale:
            await self.load()
        payload = self.watch.payload()
        if payload == self.sent:
            return b""
        self.sent = payload
        self.sent_at = now
        return encode_json_event(payload, event=self.watch.event)

    async def load(self) -> None:
        """Read the state and follow its keys; read again when keys were added (an event
        between the read and the membership would be missed)."""
        for _attempt in range(3):
            added = await self._read_and_follow()
            if not added:
                return

    async def _read_and_follow(self) -> bool:
        self.watch.stale = False
        self.during_read = []
        try:
            snapshot = await db_call(self.watch.read)
        except BaseException:
            self.watch.stale = True
            raise
        finally:
            taken, self.during_read = self.during_read, None
        keys = self.watch.replace(snapshot)
        for event in taken:
            self.take(event)
        added = keys - self.keys
        for key in self.keys - keys:
            self.keys.discard(key)
            self.hub.remove(key, self.feed)
        if added:
            self.keys |= added  # before awaiting: ``close`` removes them whatever happens
            await asyncio.gather(*(self.hub.add(key, self.feed) for key in added))
        return bool(added)

    def close(self) -> None:
        """Stop following the keys (synchronous: runs while the stream is cancelled)."""
        for key in self.keys:
            self.hub.remove(key, self.feed)
        self.keys.clear()


class Watching:
    """A stream's watches (every registered one), driven by ``notification_stream``."""

    def __init__(self, user_id: int, hub, stream_events: Subscription) -> None:
        self.runners = [WatchRunner(watch(user_id), hub, stream_events) for watch in _watches]

    async def start(self) -> bytes:
        """Read every watch and follow its keys; their first events."""
        # Each runner starts changed and stale, never sent: due at once, read by flush.
        return await self.flush(asyncio.get_running_loop().time())

    def refresh(self, event: str) -> None:
        for runner in self.runners:
            if runner.watch.event == event:
                runner.refresh()

    def due_in(self, now: float) -> float | None:
        dues = [due for runner in self.runners if (due := runner.due_in(now)) is not None]
        return min(dues) if dues else None

    async def flush(self, now: float) -> bytes:
        return b"".join([await runner.flush(now) for runner in self.runners])

    def close(self) -> None:
        for runner in self.runners:
            runner.close()
