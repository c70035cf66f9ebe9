"""Reads of different keys batched while they wait for a database thread
(batched_reads.py)."""

import asyncio
import threading

import pytest

from streamsite.streaming import batched_reads as module
from streamsite.streaming.batched_reads import BatchedReads


class Gate:
    """A batch read that records the keys of each call and, when closed, holds its thread
    until the test opens it, saying when a thread has started it."""

    def __init__(self, closed: bool = False) -> None:
        self.batches: list[list] = []
        self._recording = threading.Lock()
        self.started = threading.Event()
        self.opened = threading.Event()
        if not closed:
            self.opened.set()

    def __call__(self, keys):
        with self._recording:  # recorded before waiting: two batches can wait at once
            self.batches.append(list(keys))
            number = len(self.batches)
        self.started.set()
        assert self.opened.wait(10)
        return [(key, number) for key in keys]


async def test_callers_who_ask_before_the_read_starts_are_read_together():
    reads, gate = BatchedReads(), Gate()
    results = await asyncio.gather(*(reads.read(gate, key) for key in "abcab"))
    assert gate.batches == [list("abcab")]
    assert results == [("a", 1), ("b", 1), ("c", 1), ("a", 1), ("b", 1)]  # each its own


async def test_a_caller_who_asks_once_the_read_started_gets_a_batch_of_its_own():
    """Its read must begin after it asked (it subscribed first): the running batch's
    snapshot may be older."""
    reads, gate = BatchedReads(), Gate(closed=True)
    first = asyncio.create_task(reads.read(gate, "a"))
    assert await asyncio.to_thread(gate.started.wait, 10)
    second = asyncio.create_task(reads.read(gate, "b"))
    third = asyncio.create_task(reads.read(gate, "c"))
    await asyncio.sleep(0)  # let the later callers ask (a loop turn, not a timing guess)
    gate.opened.set()
    assert await first == ("a", 1)
    assert (await second, await third) == (("b", 2), ("c", 2))
    assert gate.batches == [["a"], ["b", "c"]]


async def test_a_full_batch_takes_no_more_keys(monkeypatch):
    monkeypatch.setattr(module, "MAX_BATCH", 3)
    reads, gate = BatchedReads(), Gate()
    results = await asyncio.gather(*(reads.read(gate, key) for key in "abcdefg"))
    # The batches run on database threads at once: which records itself first is theirs.
    assert sorted(gate.batches) == [["a", "b", "c"], ["d", "e", "f"], ["g"]]
    assert [key for key, _ in results] == list("abcdefg")


async def test_other_functions_are_other_batches():
    reads, one, two = BatchedReads(), Gate(), Gate()
    results = await asyncio.gather(reads.read(one, "a"), reads.read(two, "b"))
    assert results == [("a", 1), ("b", 1)]
    assert (one.batches, two.batches) == ([["a"]], [["b"]])


async def test_an_exception_as_a_result_reaches_its_caller_alone():
    reads = BatchedReads()

    def some_fail(keys):
        return [LookupError(key) if key.startswith("bad") else key.upper() for key in keys]

    outcomes = await asyncio.gather(
        reads.read(some_fail, "ok"), reads.read(some_fail, "bad one"), reads.read(some_fail, "x"),
        return_exceptions=True,
    )  # fmt: skip
    assert outcomes[0] == "OK" and outcomes[2] == "X"
    assert isinstance(outcomes[1], LookupError) and outcomes[1].args == ("bad one",)


async def test_an_error_of_the_read_reaches_every_caller_and_the_next_caller_reads_again():
    reads, calls = BatchedReads(), []

    def failing(keys):
        calls.append(list(keys))
        raise ConnectionError("the database went away")

    outcomes = await asyncio.gather(
        reads.read(failing, "a"), reads.read(failing, "b"), return_exceptions=True
    )
    assert [type(o) for o in outcomes] == [ConnectionError, ConnectionError]
    with pytest.raises(ConnectionError):
        await reads.read(failing, "c")
    assert calls == [["a", "b"], ["c"]]


async def test_a_read_returning_the_wrong_number_of_results_is_an_error():
    reads = BatchedReads()

    def one_result(keys):
        return [1]

    with pytest.raises(RuntimeError, match="returned 1 results for 2 keys"):
        await asyncio.gather(reads.read(one_result, "a"), reads.read(one_result, "b"))


async def test_a_caller_going_away_does_not_cancel_the_batch_for_the_others():
    reads, gate = BatchedReads(), Gate(closed=True)
    leaving = asyncio.create_task(reads.read(gate, "a"))
    staying = asyncio.create_task(reads.read(gate, "b"))
    assert await asyncio.to_thread(gate.started.wait, 10)
    leaving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leaving
    gate.opened.set()
    assert await staying == ("b", 1)
