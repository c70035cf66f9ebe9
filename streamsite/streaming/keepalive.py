"""One sweep per event loop writes the keepalives of parked streams, not a timer per stream.

An idle event stream sends a comment every ``SSE_KEEPALIVE_SECONDS`` so proxies and
browsers do not take it for dead. Waited for with a timer of its own, that keepalive woke
every idle stream every 15 s: its task resumed the whole chain of async generators
(the stream's, the logging wrapper's, Django's response iterator), yielded one comment
through the server's ``send`` and parked again, creating a new timer, future, coroutine
and one awaitable per generator each time: 9.2 % of a core for 10,000 idle streams,
2.9 % with the sweep. Those objects live until the next keepalive, long enough to outlive
the young collections, so while streams kept arriving the garbage collector's middle
collections walked more of them each time (docs/benchmarks.md, "keepalives without a
timer per stream").

A stream that can write to its connection itself (``streamsite.http_chunks.ChunkWriter``)
registers here instead and waits without a timer; once a second the sweep asks every
registered stream whether its keepalive is due (``keepalive(now)``), and a parked one
writes it straight to the connection. The sweep is one timer handle re-armed while any
stream is registered, and it forgets its loop when the last one leaves.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

#: Seconds between sweeps: a keepalive goes out up to this much later than due.
SWEEP_SECONDS = 1.0


class KeepaliveTarget(Protocol):
    def keepalive(self, now: float) -> None:
        """Write a keepalive if one is due at loop time ``now`` (and the stream is parked)."""


class Keepalives:
    """The registered streams of one event loop and the timer that sweeps them."""

    __slots__ = ("_handle", "_loop", "_targets")

    _by_loop: dict[asyncio.AbstractEventLoop, Keepalives] = {}

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._targets: set[KeepaliveTarget] = set()
        self._handle: asyncio.TimerHandle | None = None

    @classmethod
    def for_running_loop(cls) -> Keepalives:
        loop = asyncio.get_running_loop()
        keepalives = cls._by_loop.get(loop)
        if keepalives is None:
            keepalives = cls._by_loop[loop] = cls(loop)
        return keepalives

    def add(self, target: KeepaliveTarget) -> None:
        self._targets.add(target)
        if self._handle is None:
            self._handle = self._loop.call_later(SWEEP_SECONDS, self._sweep)

    def discard(self, target: KeepaliveTarget) -> None:
        self._targets.discard(target)
        if not self._targets:
            self._stop()

    def __len__(self) -> int:
        return len(self._targets)

    def _sweep(self) -> None:
        self._handle = None
        now = self._loop.time()
        for target in list(self._targets):
            target.keepalive(now)
        if self._targets:
            self._handle = self._loop.call_later(SWEEP_SECONDS, self._sweep)
        else:
            self._stop()

    def _stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._by_loop.get(self._loop) is self:
            del self._by_loop[self._loop]
