"""The dashboard's SSE stream: every process' samples merged, one event a second.

Samples go from the hub straight into an ``Aggregator`` (``Subscription.direct``), which
keeps only each process' newest: nothing is buffered per sample. The stream wakes once a
second and writes the aggregate as it is then. A slow reader's write holds the generator
up, and when it resumes it writes the newest aggregate: a one-slot buffer, never a backlog.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from streamsite.observability.aggregate import Aggregator
from streamsite.observability.live import (
    SAMPLE_EVERY_SECONDS,
    SAMPLES_KEY,
    WATCH_EVERY_SECONDS,
    awatch,
    listen,
)
from streamsite.streaming.hub import Subscription, get_hub
from streamsite.streaming.outage import CHANNEL_LAYER, report_failure
from streamsite.streaming.sse import encode_json_event, encode_retry

_logger = logging.getLogger(__name__)

#: How long the browser waits before reconnecting.
RETRY_MILLISECONDS = 2000


async def dashboard_stream(aggregator: Aggregator | None = None) -> AsyncIterator[bytes]:
    """Yield ``event: sample`` once a second until the client leaves or the server stops."""
    aggregator = aggregator or Aggregator()
    samples = Subscription(SAMPLES_KEY, maxsize=1)
    samples.direct = lambda sample: aggregator.add(sample) or True
    await listen()  # this process samples too (under runserver, the only one)
    loop = asyncio.get_running_loop()
    async with get_hub().subscribe(SAMPLES_KEY, maxsize=1, into=samples):
        yield encode_retry(RETRY_MILLISECONDS)
        tick = next_watch = loop.time()
        while not samples.restarting:  # end_streams(): the client reconnects elsewhere
            if loop.time() >= next_watch:
                next_watch += WATCH_EVERY_SECONDS
                try:
                    await awatch()
                except Exception as error:
                    report_failure(CHANNEL_LAYER, "live dashboard watches", error, _logger)
            tick += SAMPLE_EVERY_SECONDS
            await samples.wait(max(0.0, tick - loop.time()))
            if samples.restarting:
                return
            tick = max(tick, loop.time() - SAMPLE_EVERY_SECONDS)  # a slow write: no catch-up burst
            yield encode_json_event(aggregator.snapshot(), event="sample")
