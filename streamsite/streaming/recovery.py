"""Publishes that failed: sent again, and their keys resynced, once the layer is back.

A publish fails when the channel layer is unreachable (Redis restarting) or, right after a
restart, on a pooled connection that Redis has closed. Its row is committed, but a reader
that stays connected through the outage would never hear of it: the hubs' own heartbeats
may well have come through. (Issue #13: 10 of 1,730 acked chat messages never reached
readers that stayed connected.)

So the process keeps what it could not send (``LOST``), and one task, on an event loop of
the process, tries again with backoff until the layer takes a message: then it sends the
lost messages again, in order, and one ``hub.resync`` to every hub for their keys (the
subscribers re-read the database, which also corrects counts and presence). A re-sent
event arrives after later ones: subscribers place events by id and skip ids they have
sent, so it is shown once, where it belongs.
"""

from __future__ import annotations

import asyncio
import logging
import threading

from channels.layers import get_channel_layer

from streamsite.streaming.messages import HUB_GROUP, resync_message
from streamsite.streaming.outage import CHANNEL_LAYER, is_connection_error

logger = logging.getLogger(__name__)

#: Lost messages kept to send again; past this their keys are only resynced.
MAX_KEPT_MESSAGES = 1000
FIRST_RETRY_SECONDS = 0.1
MAX_RETRY_SECONDS = 5.0


class LostPublishes:
    """What could not be published, and the one task that recovers it.

    Publishes fail in any thread (sync code under ``async_to_sync``), hence the lock; the
    task runs on the loop of the first failure since the last recovery.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._messages: list[tuple[str, dict]] = []
        self._keys: set[str] = set()
        self._all_keys = False
        self._dropped = 0
        self._task: asyncio.Task | None = None
        self._wakeup: asyncio.Event | None = None

    def add(
        self, group: str, message: dict, loop: asyncio.AbstractEventLoop, *, send_again: bool
    ) -> None:
        """Keep ``message`` (if ``send_again``) and its keys; make sure the task runs."""
        kind = message.get("type")
        with self._lock:
            if kind == "hub.event":
                self._keys.add(message["key"])
            elif kind == "hub.batch":
                self._keys.update(message["keys"])
            else:  # a resync itself, or something unknown: resync everything
                self._all_keys = True
            if send_again and kind in ("hub.event", "hub.batch"):
                if len(self._messages) < MAX_KEPT_MESSAGES:
                    self._messages.append((group, message))
                else:
                    self._dropped += 1
        loop.call_soon_threadsafe(self._ensure_task)

    def reset(self) -> None:
        """Forget what was lost and the task (for tests: each has its own loop)."""
        with self._lock:
            self._messages, self._keys, self._all_keys, self._dropped = [], set(), False, 0
        self._task = self._wakeup = None

    def pending(self) -> bool:
        """Whether something waits to be recovered (for tests)."""
        return bool(self._messages or self._keys or self._all_keys)

    def layer_works(self) -> None:
        """A send just succeeded: an outage is over, and recovery can go now."""
        CHANNEL_LAYER.succeeded()
        task, wakeup = self._task, self._wakeup
        if task is not None and wakeup is not None and not task.done():
            loop = task.get_loop()
            if not loop.is_closed():
                loop.call_soon_threadsafe(wakeup.set)

    async def wait_until_recovered(self) -> None:
        """Wait until the task has nothing left to do (for tests)."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    def _ensure_task(self) -> None:
        task = self._task
        if task is None or task.done() or task.get_loop().is_closed():
            self._wakeup = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(
                self._recover_until_done(), name="publish-recovery"
            )

    def _take(self):
        with self._lock:
            messages, self._messages = self._messages, []
            keys = None if self._all_keys else sorted(self._keys)
            some = bool(messages or self._keys or self._all_keys)
            self._keys, self._all_keys = set(), False
            dropped, self._dropped = self._dropped, 0
            return some, messages, keys, dropped

    def _put_back(self, messages, keys, dropped) -> None:
        with self._lock:
            self._messages[:0] = messages  # before anything lost meanwhile: same order
            if keys is None:
                self._all_keys = True
            else:
                self._keys.update(keys)
            self._dropped += dropped

    async def _recover_until_done(self) -> None:
        layer = get_channel_layer()
        delay = FIRST_RETRY_SECONDS
        while True:
            some, messages, keys, dropped = self._take()
            if not some:
                return
            sent = 0
            try:
                for group, message in messages:
                    await layer.group_send(group, message)
                    sent += 1
                await layer.group_send(HUB_GROUP, resync_message(keys))
            except Exception as error:
                self._put_back(messages[sent:], keys, dropped)
                if is_connection_error(error):
                    CHANNEL_LAYER.failed("recovery of failed publishes", error)
                else:
                    logger.error("could not recover failed publishes", exc_info=error)
                await self._sleep(delay)
                delay = min(delay * 2, MAX_RETRY_SECONDS)
                continue
            CHANNEL_LAYER.succeeded()
            logger.info(
                "recovered failed publishes: %d sent again, %d dropped, %s resynced",
                len(messages),
                dropped,
                "every key" if keys is None else f"{len(keys)} key(s)",
            )
            delay = FIRST_RETRY_SECONDS

    async def _sleep(self, seconds: float) -> None:
        """Sleep ``seconds``, or less if a publish succeeds meanwhile (the layer is back)."""
        self._wakeup.clear()
        try:
            async with asyncio.timeout(seconds):
                await self._wakeup.wait()
        except TimeoutError:
            pass


#: The process' lost publishes.
LOST = LostPublishes()
