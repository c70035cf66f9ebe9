"""A conversation stream consumed the way Django's ASGI handler consumes it, for tests."""

import asyncio
import json
from contextlib import aclosing

import pytest

from assistant.streams import conversation_stream
from streamsite.testing.sse import StreamReader


class Viewer:
    """A conversation stream consumed by a task, as the ASGI handler consumes it."""

    def __init__(self, conversation_id, after=None, only=None):
        self.queue = asyncio.Queue()
        self.task = asyncio.create_task(self._consume(conversation_id, after, only))
        self.reader = StreamReader(self._chunks())
        self.raw = b""

    async def _consume(self, conversation_id, after, only):
        async with aclosing(conversation_stream(conversation_id, after=after, only=only)) as s:
            async for chunk in s:
                self.raw += chunk
                await self.queue.put(chunk)
        await self.queue.put(None)

    async def _chunks(self):
        while (chunk := await self.queue.get()) is not None:
            yield chunk

    def text_of(self, answer_id) -> str:
        return "".join(
            json.loads(e["data"])["text"]
            for e in self.reader.events
            if e["event"] == "delta" and json.loads(e["data"])["answer"] == answer_id
        )

    async def close(self):
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task

    async def until_done(self, seconds: float = 10) -> dict:
        """Read until the answer's ``done`` event; return its data."""
        event = await self.reader.until(lambda e: e["event"] == "done", seconds)
        return json.loads(event["data"])
