"""The event-loop task gauge (streamsite/observability/tasks.py)."""

import asyncio

import pytest

from streamsite.observability import metrics
from streamsite.observability.tasks import (
    EVERY_SECONDS,
    count_tasks,
    count_tasks_forever,
    next_count_in,
)


def counted() -> float:
    return metrics.event_loop_tasks._value.get()


async def test_the_gauge_follows_the_loops_tasks():
    loop = asyncio.get_running_loop()
    count_tasks(loop)
    before = counted()
    assert before == len(asyncio.all_tasks())
    extra = [asyncio.create_task(asyncio.Event().wait()) for _ in range(5)]
    count_tasks(loop)
    assert counted() == before + 5
    for task in extra:
        task.cancel()
    await asyncio.gather(*extra, return_exceptions=True)
    count_tasks(loop)
    assert counted() == before


async def test_counting_forever_counts_now_and_sets_the_next_count():
    metrics.event_loop_tasks.set(-1)
    loop = asyncio.get_running_loop()
    timer = count_tasks_forever()
    try:
        assert counted() == len(asyncio.all_tasks())
        assert timer.when() - loop.time() == pytest.approx(EVERY_SECONDS, abs=0.5)
    finally:
        timer.cancel()


def test_a_slow_count_spaces_out_the_next():
    """Counting walks every task: at tens of thousands it takes tens of milliseconds, and
    counting every 2 s was a sixth of an idle 10,000-socket room's CPU."""
    assert next_count_in(0.0002) == EVERY_SECONDS  # a few hundred tasks: every 2 s
    assert next_count_in(0.025) == 10.0  # 1/400 of the loop's time, at most
