"""The keepalive sweep (``streamsite.streaming.keepalive``): one timer for every stream."""

import asyncio

import pytest

from streamsite.streaming import keepalive
from streamsite.streaming.keepalive import Keepalives


@pytest.fixture(autouse=True)
def quick_sweeps(monkeypatch):
    monkeypatch.setattr(keepalive, "SWEEP_SECONDS", 0.01)


class Target:
    """Counts the sweep's calls; ``swept`` is set at each."""

    def __init__(self) -> None:
        self.calls: list[float] = []
        self.swept = asyncio.Event()

    def keepalive(self, now: float) -> None:
        self.calls.append(now)
        self.swept.set()


async def swept(target: Target) -> None:
    target.swept.clear()
    async with asyncio.timeout(5):
        await target.swept.wait()


async def test_every_registered_stream_is_asked_at_each_sweep():
    keepalives = Keepalives.for_running_loop()
    first, second = Target(), Target()
    keepalives.add(first)
    keepalives.add(second)
    await swept(first)
    await swept(first)
    assert second.calls  # the same sweeps
    keepalives.discard(first)
    keepalives.discard(second)


async def test_one_sweep_per_loop_and_none_once_the_last_stream_left():
    keepalives = Keepalives.for_running_loop()
    assert Keepalives.for_running_loop() is keepalives
    target = Target()
    keepalives.add(target)
    await swept(target)
    keepalives.discard(target)
    assert len(keepalives) == 0
    assert asyncio.get_running_loop() not in Keepalives._by_loop
    assert keepalives._handle is None  # no timer left armed on the loop
    again = Keepalives.for_running_loop()
    assert again is not keepalives
    again.add(target)
    await swept(target)
    again.discard(target)


async def test_a_stream_leaving_during_a_sweep_does_not_stop_it_for_the_others():
    keepalives = Keepalives.for_running_loop()
    staying = Target()

    class Leaving(Target):
        def keepalive(self, now: float) -> None:
            super().keepalive(now)
            keepalives.discard(self)

    leaving = Leaving()
    keepalives.add(leaving)
    keepalives.add(staying)
    await swept(leaving)
    await swept(staying)
    await swept(staying)
    assert len(leaving.calls) == 1
    keepalives.discard(staying)
