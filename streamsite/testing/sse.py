"""Read Server-Sent Events in tests the way a browser does."""

from __future__ import annotations

import asyncio
import codecs
import json
from collections.abc import AsyncIterator


class SSEParser:
    """Incremental WHATWG event-stream parser: ``feed(bytes)`` returns completed events.

    Each event is a dict with ``event`` (default "message"), ``data``, and ``id`` if the
    event had one; comments are counted in ``comments``; ``retry`` keeps the last value.
    """

    def __init__(self) -> None:
        self._pending = ""
        # A character's bytes may arrive in two chunks, as over a real socket.
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._fields: dict[str, str] = {}
        self._data: list[str] = []
        self.comments: list[str] = []
        self.retry: int | None = None

    def feed(self, chunk: bytes | str) -> list[dict]:
        text = self._decoder.decode(chunk) if isinstance(chunk, bytes) else chunk
        self._pending += text.replace("\r\n", "\n").replace("\r", "\n")
        *lines, self._pending = self._pending.split("\n")
        events = []
        for line in lines:
            if line == "":
                if self._data or self._fields:
                    event = {"event": "message", **self._fields, "data": "\n".join(self._data)}
                    events.append(event)
                self._fields, self._data = {}, []
            elif line.startswith(":"):
                self.comments.append(line[1:].strip())
            else:
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "data":
                    self._data.append(value)
                elif name == "retry" and value.isdigit():
                    self.retry = int(value)
                elif name in ("event", "id"):
                    self._fields[name] = value
        return events


class StreamReader:
    """Pull events out of an async iterator of byte chunks, each wait bounded."""

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self.chunks = chunks
        self.parser = SSEParser()
        self.events: list[dict] = []
        self._unread: list[dict] = []
        self.ended = False

    async def next_chunk(self, seconds: float = 10) -> bytes:
        async with asyncio.timeout(seconds):
            chunk = await anext(self.chunks)
        new = self.parser.feed(chunk)
        self.events += new
        self._unread += new
        return chunk

    async def next_event(self, seconds: float = 10) -> dict:
        async with asyncio.timeout(seconds):
            while not self._unread:
                await self.next_chunk(seconds)
        return self._unread.pop(0)

    async def until(self, predicate, seconds: float = 10) -> dict:
        """Read events until one satisfies ``predicate``; return it."""
        async with asyncio.timeout(seconds):
            while True:
                event = await self.next_event(seconds)
                if predicate(event):
                    return event

    async def until_end(self, seconds: float = 10) -> None:
        """Read until the stream ends."""
        async with asyncio.timeout(seconds):
            try:
                while True:
                    await self.next_chunk(seconds)
            except StopAsyncIteration:
                self.ended = True

    def notification_ids(self) -> list[int]:
        return [int(e["id"]) for e in self.events if e["event"] == "notification"]

    def last(self, kind: str) -> dict | None:
        matching = [e for e in self.events if e["event"] == kind]
        return json.loads(matching[-1]["data"]) if matching else None
