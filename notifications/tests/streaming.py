"""A notification stream consumed the way Django's ASGI handler consumes it, for tests."""

import asyncio
from contextlib import aclosing

import pytest
from asgiref.sync import async_to_sync

from notifications.selectors import notifications_after
from notifications.streams import notification_stream
from streamsite.testing.sse import StreamReader


class ConnectionStandIn:
    """The client's connection, as ``streamsite.http_chunks.ChunkWriter`` writes to it:
    chunks written directly land in the same queue as the ones the stream yields, in the
    order they were written. ``open`` False is a connection under flow control."""

    def __init__(self, queue: asyncio.Queue) -> None:
        self.queue = queue
        self.open = True
        self.writes = 0

    def writable(self) -> bool:
        return self.open

    def write(self, body: bytes) -> None:
        assert self.open and body, "written while not writable, or an empty chunk"
        self.writes += 1
        self.queue.put_nowait(body)


class Stream:
    """A stream consumed by a task, as Django's ASGI handler consumes a response.

    ``direct``: with a connection the hub may write live notifications to while the
    stream waits (``notifications.streams.DirectDelivery``), as under uvicorn.
    """

    def __init__(
        self,
        user_id: int,
        last_event_id: int | None,
        session: str | None = None,
        *,
        direct: bool = False,
    ):
        self.queue: asyncio.Queue = asyncio.Queue()
        self.writer = ConnectionStandIn(self.queue) if direct else None
        self.task = asyncio.create_task(self._consume(user_id, last_event_id, session))
        self.reader = StreamReader(self._chunks())

    @classmethod
    def for_session(cls, user_id: int, session: str) -> "Stream":
        return cls(user_id, None, session)

    async def _consume(self, user_id, last_event_id, session):
        stream = notification_stream(user_id, last_event_id, session=session, writer=self.writer)
        async with aclosing(stream) as chunks:
            async for chunk in chunks:
                await self.queue.put(chunk)
        await self.queue.put(None)

    async def _chunks(self):
        while (chunk := await self.queue.get()) is not None:
            yield chunk

    async def live(self) -> "Stream":
        """Wait until the stream has sent its catch-up (the first ``unread`` event)."""
        await self.reader.until(lambda e: e["event"] == "unread")
        return self

    async def disconnect(self) -> None:
        """Cancel the consumer, as Django does when the client goes away."""
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task


def resumed_feed(user):
    """What a stream resuming with ``Last-Event-ID: after`` replays: a function of ``after``
    returning the ids ``notifications.selectors.notifications_after`` yields."""

    async def ids_after(after: int) -> list[int]:
        return [row.pk async for row in notifications_after(user.pk, after)]

    return async_to_sync(ids_after)
