"""ORM streaming closes its cursor as soon as the consumer stops, not at garbage collection."""

import gc
from contextlib import aclosing

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.db import connection

from streamsite.streaming.orm import astream

pytestmark = pytest.mark.django_db(transaction=True)


def open_server_side_cursors() -> int:
    """Server-side cursors open on this thread's connection (PostgreSQL), else 0."""
    if connection.vendor != "postgresql" or connection.connection is None:
        return 0
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_cursors")
        return cursor.fetchone()[0]


@pytest.fixture
def users(make_user):
    return [make_user(f"user{n}") for n in range(25)]


async def test_yields_every_row_in_order(users):
    queryset = get_user_model().objects.order_by("pk").values_list("username", flat=True)
    async with aclosing(astream(queryset, chunk_size=4)) as rows:
        names = [name async for name in rows]
    assert names == [user.username for user in users]


async def test_stopping_early_closes_the_cursor_at_once(users):
    """Django's aiterator() leaves this cursor open until garbage collection."""
    gc.disable()  # prove the close does not depend on the collector
    try:
        queryset = get_user_model().objects.order_by("pk")
        async with aclosing(astream(queryset, chunk_size=4)) as rows:
            async for _ in rows:
                assert await sync_to_async(open_server_side_cursors)() in (0, 1)
                break
        assert await sync_to_async(open_server_side_cursors)() == 0
    finally:
        gc.enable()


def test_chunk_size_must_be_positive():
    with pytest.raises(ValueError, match="positive"):
        astream(get_user_model().objects.all(), chunk_size=0).__anext__().send(None)
