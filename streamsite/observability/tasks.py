"""``streamsite_event_loop_tasks``: how many tasks the server's event loop holds.

A task that outlives its connection (a writer nobody cancelled, a timer that re-arms) is
the leak a long-lived-connection server grows by; the other gauges (open streams, sockets,
hub subscriptions) would not show it. Counted by a timer on the loop every
``EVERY_SECONDS`` (a scrape may reach another worker's thread, which cannot count this
loop's tasks safely): ``len(asyncio.all_tasks())`` copies a set, about a millisecond for
20,000 tasks. Started at the server's startup (uvicorn's lifespan; daphne sends none, so
under ``runserver`` the gauge stays 0).
"""

import asyncio

from streamsite.observability import metrics

EVERY_SECONDS = 2.0


def count_tasks(loop: asyncio.AbstractEventLoop) -> None:
    """Set the gauge to the number of ``loop``'s unfinished tasks."""
    metrics.event_loop_tasks.set(len(asyncio.all_tasks(loop)))


def count_tasks_forever() -> asyncio.TimerHandle:
    """Count now, and again every ``EVERY_SECONDS`` for as long as the loop runs; return
    the timer of the next count."""
    loop = asyncio.get_running_loop()

    def count_then_again() -> asyncio.TimerHandle:
        count_tasks(loop)
        return loop.call_later(EVERY_SECONDS, count_then_again)

    return count_then_again()
