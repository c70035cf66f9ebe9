"""A stream's or socket's bounded buffer of events from the hub (``streamsite.streaming.hub``)."""

from __future__ import annotations

import asyncio

#: Pushed to subscribers when events may have been lost; they should re-read the database.
RESYNC = object()


class Subscription:
    """One stream's bounded buffer of events for one key.

    When the buffer is full the subscription is marked ``overflowed`` and takes nothing
    more: its stream should end, and its client resumes from the database. That bounds the
    memory a slow client can cost. ``end()`` does the same when the server shuts down
    (``restarting`` tells the two apart, for a socket's close code).

    The buffer is a list, not a deque: events are only appended and taken all at once,
    and an idle stream or socket holds it empty for hours, where a list costs 56 bytes
    and a deque 624 (every idle SSE stream holds one: docs/benchmarks.md, "memory per
    idle stream").
    """

    __slots__ = ("_buffer", "_waiter", "direct", "key", "maxsize", "overflowed", "restarting")

    def __init__(self, key: str, maxsize: int) -> None:
        self.key = key
        self.maxsize = maxsize
        self.overflowed = False
        self.restarting = False
        #: Optional fast path: ``direct(event)`` returns True when it handled the event
        #: itself (the hub then does not buffer it), False to have it buffered as usual.
        self.direct = None
        self._buffer: list = []
        self._waiter: asyncio.Future | None = None

    def push(self, item) -> None:
        """Add an event (or ``RESYNC``); called by the hub, never blocks."""
        if self.overflowed:
            return
        if len(self._buffer) >= self.maxsize:
            self.overflowed = True
            self._buffer.clear()
        else:
            self._buffer.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(True)

    def push_first(self, item) -> None:
        """Put ``item`` before everything buffered: what a ``direct`` handler took and
        then could not handle goes out before the events that came after it."""
        if self.overflowed:
            return
        self._buffer.insert(0, item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(True)

    def end(self) -> None:
        """Make the stream end now (the server is shutting down); its client resumes."""
        self.restarting = True
        self.overflowed = True
        self._buffer.clear()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(True)

    async def wait(self, seconds: float | None) -> bool:
        """Wait until there is something to take; return False if ``seconds`` passed first.

        A future and a timer handle, no task: cheap enough for every wake of every stream.
        ``None`` waits as long as it takes (no timer at all).
        """
        if self._buffer or self.overflowed:
            return True
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = None if seconds is None else loop.call_later(seconds, _resolve, waiter, False)
        try:
            return await waiter
        finally:
            if timer is not None:
                timer.cancel()
            self._waiter = None

    def parked(self) -> bool:
        """Whether the consumer is waiting in ``wait()`` with nothing to take: it has
        nothing in hand, so a ``direct`` handler may act for it without reordering."""
        waiter = self._waiter
        return waiter is not None and not waiter.done()

    def take(self) -> list:
        """Return and remove everything buffered, oldest first."""
        items = self._buffer
        self._buffer = []
        return items


def _resolve(future: asyncio.Future, value) -> None:
    if not future.done():
        future.set_result(value)
