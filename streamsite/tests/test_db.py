"""``db_call``: ORM work on the streams' small thread pool, leaving nothing behind."""

from django.contrib.auth import get_user_model
from django.db import DEFAULT_DB_ALIAS, connections

from streamsite.streaming.db import db_call


async def test_db_call_leaves_no_query_log_behind_with_debug_on(transactional_db, settings):
    """Issue #13 (memory grew ~3.4 KB per dropped socket under runserver): with DEBUG on,
    Django logs every query of a connection until a request starts, and the pool's
    threads serve no request, so each kept its last 9,000 queries. Nothing is kept now."""
    settings.DEBUG = True

    def query_then_hand_over_the_connection():
        list(get_user_model().objects.all()[:1])
        wrapper = connections[DEFAULT_DB_ALIAS]  # this thread's own
        assert len(wrapper.queries_log) == 1  # DEBUG logged it meanwhile
        return wrapper

    wrapper = await db_call(query_then_hand_over_the_connection)
    assert len(wrapper.queries_log) == 0


async def test_db_call_makes_no_connection_in_the_callers_context(transactional_db):
    """``connections`` is per async context: a wrapper made on the event loop stays with the
    stream or socket that called for as long as it lives (about 5 KB each; the pool gauge
    made one). The call's work, and the gauge, happen on the database thread."""
    import asyncio
    import contextvars

    async def a_stream():
        users = await db_call(lambda: get_user_model().objects.count())
        return users, hasattr(connections._connections, DEFAULT_DB_ALIAS)

    # A task of its own, with an empty context, as each connection's task is.
    task = asyncio.get_running_loop().create_task(a_stream(), context=contextvars.Context())
    users, made_one = await task
    assert users >= 0
    assert not made_one
