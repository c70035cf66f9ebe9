"""Stream query results from the ORM in chunks, closing the cursor whoever stops first.

``QuerySet.aiterator()`` fetches chunks in a thread and yields them, but when its consumer
stops early (a client disconnects mid-export) it never closes the synchronous iterator
underneath (Django's ``BaseIterable._async_generator``; ticket #37066 is about such late
cleanup). CPython's reference counting usually finalises that iterator when the async
generator is dropped, but then in the event loop's thread: the server-side cursor's
``CLOSE`` is blocking I/O on the loop, on a connection another thread owns, and with a
reference cycle or another interpreter it waits for garbage collection. ``astream`` is
the same chunked fetch with a ``finally`` that closes the cursor in the thread that owns
the connection, so ``aclosing`` around it releases everything, at once, in the right place.
"""

from collections.abc import AsyncIterator
from itertools import islice

from asgiref.sync import sync_to_async
from django.db.models import QuerySet


async def astream(queryset: QuerySet, *, chunk_size: int = 2000) -> AsyncIterator:
    """Yield the rows of ``queryset``, fetching ``chunk_size`` at a time.

    Consume it under ``contextlib.aclosing``. Like ``aiterator()`` it uses a server-side
    cursor where the database has them, so memory stays flat whatever the row count.
    """
    if chunk_size <= 0:
        raise ValueError("chunk_size must be positive")
    rows = queryset.iterator(chunk_size=chunk_size)  # a generator: no query yet
    # Thread-sensitive: every chunk, and the close, run in the thread holding the connection.
    fetch = sync_to_async(_next_chunk)
    try:
        while True:
            chunk = await fetch(rows, chunk_size)
            for row in chunk:
                yield row
            if len(chunk) < chunk_size:
                return
    finally:
        await sync_to_async(rows.close)()


def _next_chunk(rows, size: int) -> list:
    return list(islice(rows, size))
