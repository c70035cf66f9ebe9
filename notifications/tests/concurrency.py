"""Threads with database connections of their own, for tests of locks between writers."""

import threading
import time

from django.db import connections, transaction


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


def ids_when_second_starts_before_first_commits(first, second) -> tuple[int, int]:
    """Run ``first()`` in a transaction left open, then ``second()`` in another thread; fail
    if the second commits before the first does (it must wait on a lock); return both
    results (ids) once the first has committed.

    The wait is for a condition (the second thread done, or waiting on a lock in
    ``pg_stat_activity``), not for a time.
    """
    saved, release, results = threading.Event(), threading.Event(), {}

    def first_left_open():
        with transaction.atomic():
            result = first()
            saved.set()
            assert release.wait(30)
        return result

    first_thread = in_thread(first_left_open, results, "first")
    assert saved.wait(30)
    second_thread = in_thread(second, results, "second")
    deadline = time.monotonic() + 30
    while second_thread.is_alive() and not waiting_for_a_lock():
        assert time.monotonic() < deadline, "the second write neither ran nor waited"
        time.sleep(0.01)
    assert "second" not in results, "committed while an earlier id was still uncommitted"
    release.set()
    first_thread.join(30)
    second_thread.join(30)
    return results["first"], results["second"]
