"""Events are published only after the data they announce is committed."""

import datetime

import pytest
from django.db import transaction

from streamsite.streaming.publish import publish_on_commit


def test_publish_waits_for_a_real_commit(capture_published, transactional_db):
    with capture_published() as events:
        with transaction.atomic():
            publish_on_commit("user.1", {"type": "notification.created", "id": 1})
            assert events == []
        assert events == [("user.1", {"type": "notification.created", "id": 1})]


def test_capture_runs_callbacks_of_the_test_transaction(capture_published, db):
    """In a test wrapped in a transaction, the callbacks run when the capture ends."""
    with capture_published() as events:
        publish_on_commit("user.1", {"type": "notification.created", "id": 2})
        assert events == []
    assert events == [("user.1", {"type": "notification.created", "id": 2})]


def test_publish_is_dropped_with_a_rolled_back_transaction(capture_published, db):
    with capture_published() as events, pytest.raises(RuntimeError), transaction.atomic():
        publish_on_commit("user.1", {"type": "notification.created", "id": 1})
        raise RuntimeError("rollback")
    assert events == []


def test_capture_rejects_payloads_redis_cannot_carry(capture_published, db):
    """A datetime passes the in-memory layer but not Redis: the helper catches it anywhere."""
    with pytest.raises(TypeError), capture_published():
        publish_on_commit("user.1", {"type": "x", "at": datetime.datetime.now(datetime.UTC)})


async def test_published_event_reaches_a_group_member(
    channel_layer, capture_published, transactional_db
):
    from asgiref.sync import sync_to_async

    channel = await channel_layer.new_channel()
    await channel_layer.group_add("user.7", channel)

    def publish_in_transaction():
        with capture_published() as events, transaction.atomic():
            publish_on_commit("user.7", {"type": "notification.created", "id": 3})
        return events

    events = await sync_to_async(publish_in_transaction)()
    assert events == [("user.7", {"type": "notification.created", "id": 3})]
    assert await channel_layer.receive(channel) == {"type": "notification.created", "id": 3}
