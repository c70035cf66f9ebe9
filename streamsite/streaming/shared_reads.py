"""Database reads that connections asking for the same thing at the same moment share.

A connection subscribes to its key, then reads what was committed before (the hand-over:
what is published after the subscription arrives live, what was committed before is in
the read, so nothing falls between; docs/architecture.md). When a thousand sockets join
one room within a second, a thousand identical reads of its latest messages queue for the
four database threads (``streamsite.streaming.db``). A read that has not started yet can
serve every caller that asked before it starts: for each of them it still begins after
their subscription. So a caller joins the read of the same key that is waiting, if there
is one; a read, once a database thread picks it up, takes no more callers (the next one
starts a read of its own).

The read runs as a task of its own: a caller that goes away (its client left, the
consumer cancelled) does not cancel it for the others. Callers get the same result
object: they must not change it.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Callable, Hashable
from typing import Any

from streamsite.streaming.db import db_call


class SharedReads:
    """One event loop's waiting reads, by key."""

    def __init__(self) -> None:
        self._waiting: dict[Hashable, asyncio.Task] = {}
        # The loop adds waiting reads; a database thread takes a read out as it starts.
        self._lock = threading.Lock()

    async def read(self, key: Hashable, function: Callable[..., Any], /, *args) -> Any:
        """``db_call(function, *args)``, shared with callers of the same ``key`` whose read
        has not started yet. ``function`` must depend on the key only."""
        with self._lock:
            task = self._waiting.get(key)
            if task is None:
                task = asyncio.get_running_loop().create_task(
                    db_call(self._started_then, key, function, args), name=f"shared-read-{key}"
                )
                self._waiting[key] = task
                task.add_done_callback(lambda done: self._forget(key, done))
        return await asyncio.shield(task)

    def _started_then(self, key: Hashable, function: Callable[..., Any], args: tuple) -> Any:
        """On the database thread: take no more callers, then read."""
        with self._lock:
            self._waiting.pop(key, None)
        return function(*args)

    def _forget(self, key: Hashable, task: asyncio.Task) -> None:
        # A read that ended without starting (cancelled at shutdown) must not stay.
        with self._lock:
            if self._waiting.get(key) is task:
                del self._waiting[key]
        if not task.cancelled():
            task.exception()  # retrieved: its callers got it, or none was left to


class LoopLocal:
    """One ``factory()`` per running event loop, made when first asked for: its futures
    belong to that loop (a test's loop, the server's)."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        self._factory = factory
        self._per_loop: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def __call__(self) -> Any:
        loop = asyncio.get_running_loop()
        instance = self._per_loop.get(loop)
        if instance is None:
            instance = self._per_loop[loop] = self._factory()
        return instance


#: ``shared_reads()``: the running loop's shared reads.
shared_reads = LoopLocal(SharedReads)
