"""Threads with database connections of their own, for tests of locks between writers.

The commit-order tests (chat messages, notifications) share one scene: a first write takes
its id in a transaction left open, a second write starts in another connection, and only
then does the first commit. Without a lock ordering them, the second takes the next id and
commits first, and a client that resumes in between sees the later id and never the
earlier one. Every wait here is for a condition (an event, a thread done, a session
waiting on a lock in ``pg_stat_activity``), never for a time.
"""

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from django.db import connections, transaction

#: Seconds any step may take before the test fails instead of hanging.
TIMEOUT = 30


def in_thread(target, results: dict, name: str) -> threading.Thread:
    """Run ``target`` in a thread; its result (or exception) goes to ``results[name]``."""

    def run():
        try:
            results[name] = target()
        except Exception as error:  # reported by the test, not lost in the thread
            results[name] = error
        finally:
            connections.close_all()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def waiting_for_a_lock() -> int:
    """How many sessions of the test database wait for a lock (PostgreSQL)."""
    with connections["default"].cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0]


@contextmanager
def second_started_while_first_uncommitted(first, second) -> Iterator[dict]:
    """Run ``first()`` in a transaction left open, then ``second()`` in another thread, and
    yield (with the first still uncommitted) once the second has either committed or is
    waiting on a lock. On exit the first commits and both threads are joined; the dict
    yielded then holds both results under ``"first"`` and ``"second"``.
    """
    saved, release, results = threading.Event(), threading.Event(), {}

    def first_left_open():
        with transaction.atomic():
            result = first()
            saved.set()
            assert release.wait(TIMEOUT)
        return result

    first_thread = in_thread(first_left_open, results, "first")
    try:
        assert saved.wait(TIMEOUT), results.get("first", "the first write never saved")
        second_thread = in_thread(second, results, "second")
        deadline = time.monotonic() + TIMEOUT
        while second_thread.is_alive() and not waiting_for_a_lock():
            assert time.monotonic() < deadline, "the second write neither ran nor waited"
            time.sleep(0.01)  # polling a condition, not waiting for a time
        yield results
    finally:
        release.set()
        first_thread.join(TIMEOUT)
    second_thread.join(TIMEOUT)
    for name in ("first", "second"):
        if isinstance(results.get(name), Exception):
            raise results[name]


def ids_when_second_starts_before_first_commits(first, second) -> tuple[int, int]:
    """Run ``first()`` and ``second()`` as above; fail if the second commits before the
    first does (it must wait on a lock); return both results (ids)."""
    with second_started_while_first_uncommitted(first, second) as results:
        assert "second" not in results, "committed while an earlier id was still uncommitted"
    return results["first"], results["second"]


def ids_resumed_across_out_of_order_commits(
    first, second, resume: Callable[[int], list[int]], *, after: int
) -> tuple[int, int, list[int]]:
    """Resume like a client while ``first`` is still uncommitted and ``second`` has started.

    ``resume(after)`` returns the ids a client resuming "after ``after``" is sent. The
    client resumes once between the commits (from ``after``) and once after both (from
    the highest id it was sent, as the browser and chat clients do). Returns the two
    writes' ids and every id the client was sent: a skipped row is missing from it.
    """
    with second_started_while_first_uncommitted(first, second) as results:
        seen = resume(after)
    seen += resume(max(seen, default=after))
    return results["first"], results["second"], seen
