"""Reads shared by callers of one key whose read has not started (shared_reads.py)."""

import asyncio
import threading

import pytest

from streamsite.streaming.shared_reads import SharedReads


class Gate:
    """A read function that records its calls and, when closed, holds its thread until
    the test opens it, saying when a thread has started it."""

    def __init__(self, closed: bool = False) -> None:
        self.calls = 0
        self._counting = threading.Lock()
        self.started = threading.Event()
        self.opened = threading.Event()
        if not closed:
            self.opened.set()

    def __call__(self, value):
        # The call's number is taken before waiting: two reads can wait at the gate at
        # once, and the first must not report the second's count.
        with self._counting:
            self.calls += 1
            number = self.calls
        self.started.set()
        assert self.opened.wait(10)
        return [value, number]


async def test_callers_who_ask_before_the_read_starts_share_it():
    reads, gate = SharedReads(), Gate()
    results = await asyncio.gather(*(reads.read("room 1", gate, "latest") for _ in range(5)))
    assert gate.calls == 1
    assert all(result is results[0] for result in results)  # the same object, shared
    assert results[0] == ["latest", 1]


async def test_a_caller_who_asks_once_the_read_started_gets_a_read_of_its_own():
    """It subscribed after the first read's snapshot may have been taken: sharing it could
    miss what was committed in between."""
    reads, gate = SharedReads(), Gate(closed=True)
    first = asyncio.create_task(reads.read("room 1", gate, "x"))
    assert await asyncio.to_thread(gate.started.wait, 10)
    second = asyncio.create_task(reads.read("room 1", gate, "x"))
    await asyncio.sleep(0)  # let the second caller ask (a loop turn, not a timing guess)
    gate.opened.set()
    assert await first == ["x", 1]
    assert await second == ["x", 2]
    assert gate.calls == 2


async def test_other_keys_are_other_reads():
    reads, gate = SharedReads(), Gate()
    one, two = await asyncio.gather(reads.read("room 1", gate, 1), reads.read("room 2", gate, 2))
    assert (one[0], two[0], gate.calls) == (1, 2, 2)


async def test_a_caller_going_away_does_not_cancel_the_read_for_the_others():
    reads, gate = SharedReads(), Gate(closed=True)
    leaving = asyncio.create_task(reads.read("room 1", gate, "x"))
    staying = asyncio.create_task(reads.read("room 1", gate, "x"))
    assert await asyncio.to_thread(gate.started.wait, 10)
    leaving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leaving
    gate.opened.set()
    assert await staying == ["x", 1]


async def test_an_error_reaches_every_caller_and_the_next_caller_reads_again():
    reads = SharedReads()
    calls = []

    def failing(value):
        calls.append(value)
        raise LookupError("no such room")

    outcomes = await asyncio.gather(
        reads.read("room 1", failing, "x"), reads.read("room 1", failing, "x"),
        return_exceptions=True,
    )  # fmt: skip
    assert [type(o) for o in outcomes] == [LookupError, LookupError] and calls == ["x"]
    with pytest.raises(LookupError):
        await reads.read("room 1", failing, "x")
    assert calls == ["x", "x"]
