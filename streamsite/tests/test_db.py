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
