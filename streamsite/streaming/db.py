"""Database connection hygiene for long-lived streams."""

from asgiref.sync import sync_to_async
from django.db import close_old_connections


async def arelease_connections() -> None:
    """Give back this request's database connections before a stream waits.

    Django closes a request's connections only when the request ends, which for a stream
    is when the client leaves: 100 idle tabs would pin 100 PostgreSQL connections. The ORM
    calls of a request run in its own thread-sensitive executor, and this runs there too,
    so it closes (returns to the pool) exactly the connections the stream opened.
    ``CONN_MAX_AGE = 0`` makes every connection "old" once its query is done.
    """
    await sync_to_async(close_old_connections)()
