"""``streamsite_event_loop_tasks``: how many tasks the server's event loop holds.

A task that outlives its connection (a writer nobody cancelled, a timer that re-arms) is
the leak a long-lived-connection server grows by; the other gauges (open streams, sockets,
hub subscriptions) would not show it. Counted by a timer on the loop (a scrape may reach
another worker's thread, which cannot count this loop's tasks safely) every
``EVERY_SECONDS``, or less often when counting is slow: ``asyncio.all_tasks()`` walks
every task in Python, about 25 ms for the tens of thousands of tasks 10,000 chat sockets
keep on this project's 2-core machine, which was a sixth of that idle room's CPU at one
count every 2 s (docs/benchmarks.md). The next count waits at least
``COUNTING_SHARE_LIMIT`` times as long as this one took. Started at the server's
startup (uvicorn's lifespan; daphne sends none, so under ``runserver`` the gauge stays 0).
"""

import asyncio
import time

from streamsite.observability import metrics

EVERY_SECONDS = 2.0
#: The next count waits this many times as long as the last one took, at least: counting
#: takes at most 1/400 of the loop's time.
COUNTING_SHARE_LIMIT = 400


def count_tasks(loop: asyncio.AbstractEventLoop) -> None:
    """Set the gauge to the number of ``loop``'s unfinished tasks."""
    metrics.event_loop_tasks.set(len(asyncio.all_tasks(loop)))


def count_tasks_forever() -> asyncio.TimerHandle:
    """Count now, and again every ``EVERY_SECONDS`` for as long as the loop runs; return
    the timer of the next count."""
    loop = asyncio.get_running_loop()

    def count_then_again() -> asyncio.TimerHandle:
        started = time.perf_counter()
        count_tasks(loop)
        return loop.call_later(next_count_in(time.perf_counter() - started), count_then_again)

    return count_then_again()


def next_count_in(seconds_taken: float) -> float:
    """Seconds until the next count, after one that took ``seconds_taken``."""
    return max(EVERY_SECONDS, seconds_taken * COUNTING_SHARE_LIMIT)
