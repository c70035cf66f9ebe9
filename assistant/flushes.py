"""One writer per process for the text of every answer it generates: shared flushes.

A flush per answer (an UPDATE, a COMMIT, a database-thread hop and a channel-layer
message each) made 200 answers at 50 tokens/s cost 4,000 of each per second: the hub's
channel filled, events were dropped, and every viewer fell back to re-reading the database.
Here each process has one ``Flusher``: generations hand it their text, and it writes the
text of every answer that has some in one ``services.answers_append`` (one transaction,
one channel-layer message for all their deltas), then starts again with what arrived
meanwhile. The busier the process, the more answers each flush carries; an idle one
writes a token as soon as it arrives.

Flushes start at most one per ``ASSISTANT_FLUSH_MILLISECONDS`` (the cost of the
database's commits bounded per process, whatever the number of answers), except that an
answer's first text never waits for that spacing (time to first token).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

from django.conf import settings

from assistant import services
from streamsite.streaming.db import db_call

logger = logging.getLogger(__name__)

#: After a failed flush (the database is away), the pause before the next try.
RETRY_PAUSE_SECONDS = 0.2


class Writer(Protocol):
    """What the flusher needs of a generation (``assistant.runner.Generation``)."""

    answer_id: int
    first_written: bool

    def take(self) -> services.Append | None:
        """The text to write now (None for none), marked in flight until ``written``."""

    def written(self, append: services.Append, outcome: bool | None) -> None:
        """``append`` was stored (True), refused: the answer ended (False), or failed (None)."""


class Flusher:
    """This process' writer of answer text (see the module docstring)."""

    def __init__(self) -> None:
        self._waiting: dict[int, Writer] = {}
        self._wakeup = asyncio.Event()
        self._first_waiting = asyncio.Event()
        self._task: asyncio.Task | None = None

    def submit(self, writer: Writer) -> None:
        """``writer`` has text to write: it goes out with the next flush."""
        self._waiting[writer.answer_id] = writer
        if not writer.first_written:
            self._first_waiting.set()
        self._wakeup.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._flush_forever(), name="assistant-flusher")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _flush_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            if not self._waiting:
                continue
            started = loop.time()
            if not await self.flush():
                await asyncio.sleep(RETRY_PAUSE_SECONDS)
                continue
            await self._spacing(started + settings.ASSISTANT_FLUSH_MILLISECONDS / 1000)

    async def flush(self) -> bool:
        """Write what every waiting generation has; False if the write failed."""
        writers, self._waiting = self._waiting, {}
        self._first_waiting.clear()
        taken = [(writer, append) for writer in writers.values() if (append := writer.take())]
        if not taken:
            return True
        try:
            written = await db_call(services.answers_append, [append for _, append in taken])
        except Exception:
            logger.warning("writing the text of %d answer(s) failed; retrying", len(taken))
            for writer, append in taken:
                writer.written(append, None)
            return False
        for writer, append in taken:
            writer.written(append, append.answer_id in written)
        return True

    async def _spacing(self, deadline: float) -> None:
        """Wait until ``deadline``, or less if an answer's first text is waiting."""
        delay = deadline - asyncio.get_running_loop().time()
        if delay <= 0 or self._first_waiting.is_set():
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._first_waiting.wait()
