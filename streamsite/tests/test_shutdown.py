"""Streams and sockets end as soon as the server is told to stop (streamsite/shutdown.py).

The live regressions (SIGTERM and SIGKILL to ``manage.py serve``) are in
test_shutdown_live.py; these pin the two triggers in process.
"""

import asyncio
import signal

import pytest

from streamsite.shutdown import chain_shutdown_signals, end_streams_before_reload
from streamsite.streaming.hub import close_hub, get_hub


@pytest.fixture
async def process_hub():
    """The running loop's hub (the one ``end_streams`` finds), closed after the test."""
    yield get_hub()
    await close_hub()


async def open_streams(hub, prefix: str, count: int) -> list[asyncio.Task]:
    """``count`` streams' lives: subscribed until the hub ends them, then gone."""

    async def stream(key: str, subscribed: asyncio.Event) -> None:
        async with hub.subscribe(key, maxsize=10) as subscription:
            subscribed.set()
            await subscription.wait(None)
            assert subscription.restarting

    events = [asyncio.Event() for _ in range(count)]
    tasks = [asyncio.create_task(stream(f"{prefix}.{n}", e)) for n, e in enumerate(events)]
    async with asyncio.timeout(10):
        for event in events:
            await event.wait()
    return tasks


@pytest.fixture
def saved_signal_handlers():
    saved = {number: signal.getsignal(number) for number in (signal.SIGTERM, signal.SIGINT)}
    yield
    for number, handler in saved.items():
        signal.signal(number, handler)


async def test_a_shutdown_signal_ends_every_stream_then_reaches_the_server(
    process_hub, saved_signal_handlers
):
    """uvicorn's handler still runs (it stops the server); the streams end first."""
    received = []
    signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    assert signal.SIGTERM in chain_shutdown_signals()
    streams = await open_streams(process_hub, "k.term", 3)
    signal.raise_signal(signal.SIGTERM)
    async with asyncio.timeout(5):
        await asyncio.gather(*streams)
    assert received == [signal.SIGTERM]


def test_default_handlers_are_left_alone(saved_signal_handlers):
    """A process whose server installed no handler (a test run, daphne) is not changed."""

    async def chain():
        return chain_shutdown_signals()

    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # (asyncio.run installs a SIGINT handler of its own, which is chained like uvicorn's.)
    assert signal.SIGTERM not in asyncio.run(chain())
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


async def test_runserver_s_reload_ends_every_stream_before_it_restarts(process_hub):
    """The reloader's thread waits until daphne's loop has ended the streams."""
    streams = await open_streams(process_hub, "k.reload", 3)
    await asyncio.to_thread(end_streams_before_reload, sender=None, file_path="views.py")
    assert process_hub.local_subscriber_count() == 0
    async with asyncio.timeout(5):
        await asyncio.gather(*streams)
