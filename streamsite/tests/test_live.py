"""The per-process sampler and its listener on the project's channel layer (both backends)."""

import asyncio
import json
from contextlib import aclosing

import pytest

from streamsite.observability.aggregate import Aggregator
from streamsite.observability.dashboard import dashboard_stream
from streamsite.observability.live import (
    SAMPLES_KEY,
    WATCH_KEY,
    awatch,
    get_sampler,
    listen,
    process_label,
)
from streamsite.streaming.hub import Subscription, close_hub, get_hub
from streamsite.testing.sse import StreamReader

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
async def process_hub():
    yield get_hub()
    sampler = get_sampler()
    if sampler._task is not None:
        sampler._task.cancel()
        await asyncio.gather(sampler._task, return_exceptions=True)
    await close_hub()


async def test_a_watch_makes_every_listening_process_publish_a_sample(process_hub):
    await listen()
    await listen()  # idempotent: one membership, one listener
    assert process_hub.local_subscriber_count(WATCH_KEY) == 1
    ours: list[dict] = []
    got_ours = asyncio.Event()

    def arrive(sample: dict) -> bool:
        # Live servers of other tests on the same Redis listen too, and answer the watch.
        if sample["process"] == process_label():
            ours.append(sample)
            got_ours.set()
        return True

    samples = Subscription(SAMPLES_KEY, maxsize=1)
    samples.direct = arrive
    async with process_hub.subscribe(SAMPLES_KEY, maxsize=1, into=samples):
        await awatch()
        async with asyncio.timeout(5):
            await got_ours.wait()
    sample = ours[0]
    assert {"streams", "sockets", "delivered_per_s", "p99_ms", "db", "redis"} <= set(sample)


async def test_the_listener_leaves_when_the_hub_ends_its_streams(process_hub):
    """A runserver reload waits for the hub to drain: the listener must not hold it up."""
    await listen()
    assert process_hub.end_streams() == 1
    async with asyncio.timeout(2):
        await process_hub.wait_until_drained()
    assert process_hub.local_subscriber_count() == 0


async def test_a_slow_reader_gets_the_newest_aggregate_not_a_backlog(process_hub):
    """Samples that arrive while the reader does not read replace each other."""
    aggregator = Aggregator()
    chunks = dashboard_stream(aggregator)
    async with aclosing(chunks):
        reader = StreamReader(chunks)
        assert await reader.next_chunk() == b"retry: 2000\n\n"
        await reader.next_event(5)
        for n in range(500):  # while the reader is away: the hub would hand over these
            aggregator.add({"process": "elsewhere:1", "streams": n})
        event = await reader.next_event(5)
        others = [
            p for p in json.loads(event["data"])["processes"] if p["process"] != "elsewhere:1"
        ]
        assert json.loads(event["data"])["total"]["streams"] == 499 + sum(
            p["streams"] for p in others
        )
        # One slot per process (others' live servers on the same Redis may have one too),
        # holding its newest sample: the 499 others were replaced, not queued.
        listed = [p["process"] for p in json.loads(event["data"])["processes"]]
        assert len(listed) == len(set(listed))
        assert aggregator._latest["elsewhere:1"][1]["streams"] == 499
