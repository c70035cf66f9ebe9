"""Whether any tab shows a conversation, across every server process.

When an answer finishes and nobody is looking, its owner gets a notification ("Your answer
is ready"); when a tab shows the conversation, the answer itself is the news. Each process
counts its open streams per conversation in memory and, with ``REDIS_URL``, keeps one entry
per (conversation, process) in a Redis sorted set scored by an expiry that it renews while
it has viewers: a process that crashed stops renewing and its entries lapse. Without Redis
(the embedded single process) the in-memory count is the whole truth.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
import weakref
from collections.abc import Iterator

from streamsite.streaming.outage import SHARED_REDIS, report_failure
from streamsite.streaming.redis import get_redis

logger = logging.getLogger(__name__)

#: An entry lapses this long after its process last renewed it.
WATCH_TTL_SECONDS = 30


def watchers_key(conversation_id: int) -> str:
    return f"assistant.watchers.{int(conversation_id)}"


class Watchers:
    """This process' viewers per conversation, mirrored to Redis when there is one."""

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.process = uuid.uuid4().hex
        self._renewer: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()

    @contextlib.contextmanager
    def watching(self, conversation_id: int) -> Iterator[None]:
        """Count one viewer of ``conversation_id`` for the block's duration.

        Leaving is synchronous (it runs while a stream is cancelled); the Redis entry is
        removed by a task of its own.
        """
        count = self.counts.get(conversation_id, 0)
        self.counts[conversation_id] = count + 1
        if count == 0:
            self._spawn(self._mark([conversation_id]))
            self._ensure_renewer()
        try:
            yield
        finally:
            count = self.counts.pop(conversation_id, 1) - 1
            if count > 0:
                self.counts[conversation_id] = count
            else:
                self._spawn(self._unmark(conversation_id))

    async def anyone_watching(self, conversation_id: int) -> bool:
        if self.counts.get(conversation_id):
            return True
        client = get_redis()
        if client is None:
            return False
        try:
            now_ms = int(time.time() * 1000)
            found = await client.zrangebyscore(
                watchers_key(conversation_id), now_ms, "+inf", start=0, num=1
            )
        except Exception as error:
            report_failure(SHARED_REDIS, "asking who watches a conversation", error, logger)
            return True  # unsure: no notification rather than a wrong one
        SHARED_REDIS.succeeded()
        return bool(found)

    def _spawn(self, coroutine) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _ensure_renewer(self) -> None:
        if get_redis() is not None and (self._renewer is None or self._renewer.done()):
            self._renewer = asyncio.get_running_loop().create_task(self._renew_forever())

    async def _mark(self, conversation_ids: list[int]) -> None:
        client = get_redis()
        if client is None or not conversation_ids:
            return
        expires_ms = int((time.time() + WATCH_TTL_SECONDS) * 1000)
        try:
            async with client.pipeline(transaction=False) as pipe:
                for conversation_id in conversation_ids:
                    key = watchers_key(conversation_id)
                    pipe.zadd(key, {self.process: expires_ms})
                    pipe.pexpire(key, WATCH_TTL_SECONDS * 1000)
                await pipe.execute()
        except Exception as error:
            report_failure(SHARED_REDIS, "recording viewers", error, logger)
        else:
            SHARED_REDIS.succeeded()

    async def _unmark(self, conversation_id: int) -> None:
        client = get_redis()
        if client is None or self.counts.get(conversation_id):
            return
        try:
            await client.zrem(watchers_key(conversation_id), self.process)
        except Exception as error:
            report_failure(SHARED_REDIS, "removing viewers", error, logger)

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(WATCH_TTL_SECONDS / 3)
            await self._mark(list(self.counts))

    async def close(self) -> None:
        tasks = [*self._tasks, *([self._renewer] if self._renewer else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


_watchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Watchers] = (
    weakref.WeakKeyDictionary()
)


def get_watchers() -> Watchers:
    """The running loop's watchers (one per server process)."""
    loop = asyncio.get_running_loop()
    watchers = _watchers.get(loop)
    if watchers is None:
        watchers = _watchers[loop] = Watchers()
    return watchers
