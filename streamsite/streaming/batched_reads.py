"""Database reads of many different keys that wait for a thread at the same moment, done
as one read.

``SharedReads`` (shared_reads.py) serves callers who ask for the same key. Callers who ask
for different keys of the same kind (the sessions and users of a thousand WebSocket
handshakes arriving within a second) each cost a thread hop, a connection check-out and a
query or two, queued for the four database threads (``streamsite.streaming.db``) and the
GIL. Here a caller adds its key to the batch of its function that is waiting for a thread,
if there is one, and the batch runs as one ``db_call``: ``function(keys)`` reads them all
(``WHERE key IN (...)``) and returns one result per key, in order. A batch, once a
database thread picks it up, takes no more keys (the next caller starts a batch of its
own), so a caller's read still begins after the caller asked; a batch holds at most
``MAX_BATCH`` keys.

The batch runs as a task of its own: a caller that goes away does not cancel it for the
others. A result that is an exception is raised to its caller alone (the function decides
which keys failed); an exception out of the function reaches every caller of the batch.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from streamsite.streaming.db import db_call
from streamsite.streaming.shared_reads import LoopLocal

#: Keys one read takes at most: bounds the query's ``IN`` list and what one caller waits for.
MAX_BATCH = 500


class _Batch:
    __slots__ = ("keys", "task")

    def __init__(self) -> None:
        self.keys: list[Hashable] = []
        self.task: asyncio.Task | None = None


class BatchedReads:
    """One event loop's batches waiting for a database thread, by function."""

    def __init__(self) -> None:
        self._waiting: dict[Callable, _Batch] = {}
        # The loop adds keys; a database thread closes a batch as it starts.
        self._lock = threading.Lock()

    async def read(self, function: Callable[[Sequence[Hashable]], Sequence[Any]], key: Hashable):
        """``function([key])[0]``, read together with the keys of other callers whose batch
        has not started yet. ``function`` takes a list of keys (it may repeat one) and
        returns a list of results of the same length, in the same order."""
        with self._lock:
            batch = self._waiting.get(function)
            if batch is None:
                batch = self._waiting[function] = _Batch()
                batch.task = asyncio.get_running_loop().create_task(
                    db_call(self._started_then, function, batch),
                    name=f"batched-read-{getattr(function, '__name__', function)}",
                )
                batch.task.add_done_callback(lambda done: self._forget(function, batch, done))
            index = len(batch.keys)
            batch.keys.append(key)
            if len(batch.keys) >= MAX_BATCH:
                del self._waiting[function]  # full: the next caller starts another
            task = batch.task
        results = await asyncio.shield(task)
        result = results[index]
        if isinstance(result, BaseException):
            raise result
        return result

    def _started_then(self, function: Callable, batch: _Batch) -> Sequence[Any]:
        """On the database thread: take no more keys, then read them all."""
        with self._lock:
            if self._waiting.get(function) is batch:
                del self._waiting[function]
            keys = list(batch.keys)
        results = function(keys)
        if len(results) != len(keys):
            raise RuntimeError(f"{function!r} returned {len(results)} results for {len(keys)} keys")
        return results

    def _forget(self, function: Callable, batch: _Batch, task: asyncio.Task) -> None:
        # A batch that ended without starting (cancelled at shutdown) must not stay.
        with self._lock:
            if self._waiting.get(function) is batch:
                del self._waiting[function]
        if not task.cancelled():
            task.exception()  # retrieved: its callers got it, or none was left to


#: ``batched_reads()``: the running loop's batched reads.
batched_reads = LoopLocal(BatchedReads)
