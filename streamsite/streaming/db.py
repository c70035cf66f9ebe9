"""Database access for long-lived streams: no thread and no connection kept while idle."""

import logging
import time
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import sync_to_async
from django.db import connections

from streamsite.observability import metrics
from streamsite.streaming.publish import apublish, deferred_publishing, publish_failed

logger = logging.getLogger(__name__)

#: Threads (so at most as many database connections) that streams' queries use at once.
#: Small on purpose: queries are short, and each thread keeps one pooled connection warm.
STREAM_DB_THREADS = 4
_executor = ThreadPoolExecutor(max_workers=STREAM_DB_THREADS, thread_name_prefix="stream-db")


async def db_call(function, /, *args, **kwargs):
    """Run a short piece of ORM code on the shared thread pool; then close its connections.

    The async ORM (``acount()``, ``aiterator()``, ``request.auser()``) runs in the
    request's thread-sensitive executor: a thread created for the request that lives until
    the request ends, and the connection it opened stays checked out of the pool until
    then. For a stream that is the client's whole visit: 10,000 open streams would be
    10,000 idle threads and would pin every PostgreSQL connection.

    Here the work runs on a small pool of its own (``STREAM_DB_THREADS``) and closes
    (returns to the pool) every connection it opened before the result comes back. That is
    safe because ``function`` starts and ends its own work within the call: no transaction,
    cursor or lazy queryset may outlive it. What ``function`` publishes after its commits
    is sent from the event loop once it returns (in order, before this returns), so the
    thread is not held waiting for the loop (``deferred_publishing``).
    """

    def call_then_close():
        with deferred_publishing() as sends:
            try:
                return function(*args, **kwargs), None, sends
            except Exception as error:
                return None, error, sends
            finally:
                for connection in connections.all(initialized_only=True):
                    connection.close()
                    # With DEBUG on (runserver), Django logs every query of a connection
                    # until a request starts (reset_queries): these threads serve none,
                    # so each kept its last 9,000 queries, ~4 KB per chat socket's join.
                    connection.queries_log.clear()
                _gauge_pool()

    started = time.monotonic()
    metrics.db_call_queue_depth.inc()  # waiting for, or running on, one of the threads
    try:
        result, error, sends = await sync_to_async(
            call_then_close, thread_sensitive=False, executor=_executor
        )()
    finally:
        metrics.db_call_queue_depth.dec()
        metrics.db_call_seconds.observe(time.monotonic() - started)
    # What the function published after its commits is sent from here, the event loop:
    # the database thread is free again at once (see deferred_publishing).
    for group, message in sends:
        try:
            await apublish(group, message)
        except Exception as send_error:  # not ``error``: ``except`` would unbind it
            publish_failed(group, message, send_error)
    if error is not None:
        raise error
    return result


def _gauge_pool() -> None:
    """``streamsite_db_pool_in_use``: connections checked out of this process' PostgreSQL
    pool (psycopg_pool, DATABASE_POOL_MAX_SIZE). Nothing with SQLite, which has no pool.

    Read on the database thread, after the call: ``connections`` is per async context, so
    read on the event loop it made a connection wrapper (and its operations, features,
    introspection... objects) in the context of every stream and socket that called, kept
    for the connection's life: about 5 KB each (tracemalloc of 1,000 open streams).
    """
    pool = getattr(connections["default"], "pool", None)
    if pool is not None:
        stats = pool.get_stats()
        metrics.db_pool_in_use.set(stats.get("pool_size", 0) - stats.get("pool_available", 0))


async def keyset_pages(fetch_page, after_id: int, *, page_size: int = 500):
    """Yield the rows ``fetch_page(after_id, limit)`` returns, page after page.

    ``fetch_page`` is a synchronous ORM function returning up to ``limit`` rows with an id
    above ``after_id``, oldest first; each page runs through ``db_call``, so nothing (no
    thread, connection or cursor) is held between pages: a stream replaying to a slow
    client pins nothing, and one that is closed mid-way has nothing to clean up.
    """
    while True:
        page = await db_call(fetch_page, after_id, page_size)
        for row in page:
            yield row
        if len(page) < page_size:
            return
        after_id = page[-1].pk


def skip_request_started_db_cleanup() -> None:
    """Disconnect Django's start-of-request database cleanup, pointless under ASGI.

    Django connects ``reset_queries`` and ``close_old_connections`` to ``request_started``.
    Being synchronous, ``asend()`` runs them through ``sync_to_async``, which creates the
    request's executor thread at the very start of every request, and a stream then keeps
    that idle thread for its lifetime (measured: one OS thread and ~80 KB per stream).
    Under ASGI the request's synchronous work runs in that brand-new thread, which has no
    connection to close and no query log to reset, so the receivers do nothing useful.
    streamsite is served only over ASGI (daphne, uvicorn). The end-of-request cleanup
    (``request_finished``) stays: it closes what the request's thread opened.
    """
    from django.core.signals import request_started
    from django.db import close_old_connections, reset_queries

    request_started.disconnect(reset_queries)
    request_started.disconnect(close_old_connections)
