"""``metrics.Tally``: per-delivery counts reach their counter within a second, or at once
when something is about to read it."""

import asyncio

from prometheus_client import CollectorRegistry, Counter

from streamsite.observability.metrics import Tally


def counter_and_registry():
    registry = CollectorRegistry()
    counter = Counter("tally_test_events", "", ["app", "type"], registry=registry)
    return counter, registry


def value(registry, app, kind):
    return registry.get_sample_value("tally_test_events_total", {"app": app, "type": kind}) or 0


async def test_counts_reach_the_counter_after_the_delay_without_a_read():
    counter, registry = counter_and_registry()
    tally = Tally(counter, seconds=0.05)
    for _ in range(3):
        tally.add("chat", "message")
    tally.add("chat", "deleted")
    assert value(registry, "chat", "message") == 0  # batched, not yet written
    loop = asyncio.get_running_loop()
    flushed = loop.create_future()
    loop.call_later(0.06, flushed.set_result, None)  # the timer is due before this one
    await flushed
    assert value(registry, "chat", "message") == 3
    assert value(registry, "chat", "deleted") == 1


async def test_flush_writes_at_once_and_counts_nothing_twice():
    counter, registry = counter_and_registry()
    tally = Tally(counter, seconds=60)
    tally.add("notifications", "created")
    tally.flush()
    tally.flush()
    assert value(registry, "notifications", "created") == 1
    tally.add("notifications", "created")
    tally.flush()
    assert value(registry, "notifications", "created") == 2


def test_without_a_running_loop_it_writes_at_once():
    counter, registry = counter_and_registry()
    Tally(counter).add("assistant", "delta")
    assert value(registry, "assistant", "delta") == 1


def test_a_timer_left_on_a_closed_loop_does_not_stop_later_counts():
    counter, registry = counter_and_registry()
    tally = Tally(counter, seconds=60)

    async def count_once():
        tally.add("chat", "message")

    asyncio.run(count_once())  # its loop closes with the timer pending
    assert value(registry, "chat", "message") == 0
    tally.add("chat", "message")  # no loop now: written at once, with the earlier one
    assert value(registry, "chat", "message") == 2
