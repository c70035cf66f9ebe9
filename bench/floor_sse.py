"""The SSE floor: a plain Starlette broadcaster, the least a stream server can do per event.

``bench.sse`` serves it (configuration ``floor-starlette``) with the production uvicorn
command line (``uvicorn bench.floor_sse:app``, one process) and measures it with the same
load generator, stream count and publish rate as streamsite, in the same run: streamsite's
deliveries per second are reported as a ratio of these.

What it does, and no more: one Redis pub/sub subscription for the whole process
(``BENCH_FLOOR_CHANNEL`` on ``REDIS_URL``); each message (a notification as JSON, sent by
``bench.publisher --mode floor``) is encoded once into the bytes streamsite's stream sends
for a notification (``event``, ``id``, ``data`` lines) and put on every connected stream's
queue; each stream is a ``StreamingResponse`` draining its queue. A stream starts with an
``unread`` event, as streamsite's does, which the load generator waits for. No session,
no database, no per-user fields: that is what makes it a floor.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os

import redis.asyncio as aioredis
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Route

#: A stream's queue holds this many events; a stream that falls further behind misses
#: events (counted), as a plain broadcaster would.
QUEUE_SIZE = 1000
KEEPALIVE_SECONDS = 15
KEEPALIVE = b": keepalive\n\n"
FIRST_EVENT = b'retry: 3000\n\nevent: unread\ndata: {"count":0}\n\n'


class Broadcaster:
    """Every open stream's queue, and the one subscription that feeds them."""

    def __init__(self) -> None:
        self.queues: set[asyncio.Queue] = set()
        self.dropped = 0

    def fan_out(self, data: bytes) -> None:
        for queue in self.queues:
            try:
                queue.put_nowait(data)
            except asyncio.QueueFull:
                self.dropped += 1

    async def listen(self, pubsub) -> None:
        async for message in pubsub.listen():
            if message["type"] != "message":
                continue
            event = json.loads(message["data"])
            data = json.dumps(event, separators=(",", ":"))
            self.fan_out(f"event: notification\nid: {event['id']}\ndata: {data}\n\n".encode())

    async def keepalive(self) -> None:
        while True:
            await asyncio.sleep(KEEPALIVE_SECONDS)
            self.fan_out(KEEPALIVE)


broadcaster = Broadcaster()


async def stream(request):
    queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=QUEUE_SIZE)

    async def events():
        broadcaster.queues.add(queue)
        try:
            yield FIRST_EVENT
            while True:
                yield await queue.get()
        finally:
            broadcaster.queues.discard(queue)

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)


async def ready(request):
    return PlainTextResponse("ok\n")


@contextlib.asynccontextmanager
async def lifespan(app):
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/9")
    channel = os.environ.get("BENCH_FLOOR_CHANNEL", "bench-floor")
    client = aioredis.from_url(url)
    pubsub = client.pubsub()
    # Subscribed before the server answers: the harness publishes once it is ready.
    await pubsub.subscribe(channel)
    tasks = [
        asyncio.create_task(broadcaster.listen(pubsub)),
        asyncio.create_task(broadcaster.keepalive()),
    ]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await pubsub.aclose()
        await client.aclose()


app = Starlette(
    routes=[Route("/stream/", stream), Route("/bench/ready/", ready)], lifespan=lifespan
)
