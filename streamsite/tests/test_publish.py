"""Events are published only after the data they announce is committed."""

import datetime
import logging

import pytest
from django.db import transaction

from streamsite.streaming.messages import BATCH_CACHE
from streamsite.streaming.publish import publish_batch_on_commit, publish_on_commit


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


async def test_published_events_reach_hub_subscribers(capture_published, transactional_db, hub):
    from asgiref.sync import sync_to_async

    def publish_in_transaction():
        with capture_published() as events, transaction.atomic():
            publish_on_commit("user.7", {"kind": "created", "id": 3})
            publish_batch_on_commit(["user.7", "user.8"], {"kind": "created"}, {"id": [4, 5]})
        return events

    async with hub.subscribe("user.7", maxsize=10) as subscription:
        events = await sync_to_async(publish_in_transaction)()
        assert events == [
            ("user.7", {"kind": "created", "id": 3}),
            ("user.7", {"kind": "created", "id": 4}),
            ("user.8", {"kind": "created", "id": 5}),
        ]
        received = []
        while len(received) < 2:
            assert await subscription.wait(5)
            received += subscription.take()
        received[1].pop(BATCH_CACHE)  # the batch's shared cache (see messages.py)
        assert received == [{"kind": "created", "id": 3}, {"kind": "created", "id": 4}]


def test_empty_batch_publishes_nothing(capture_published, db):
    with capture_published() as events:
        publish_batch_on_commit([], {"kind": "created"}, {"id": []})
    assert events == []


def test_failed_send_is_logged_not_raised(
    db, monkeypatch, caplog, django_capture_on_commit_callbacks
):
    """The data is committed; its readers recover (streamsite.streaming.recovery). The
    request must not fail, and an unreachable layer is one warning, not a traceback."""
    from streamsite.streaming import publish as publish_module

    def broken(group, message):
        raise ConnectionError("redis is down")

    monkeypatch.setattr(publish_module, "publish", broken)
    with django_capture_on_commit_callbacks(execute=True):
        for n in range(5):
            publish_on_commit("user.1", {"kind": "created", "id": n})
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.getMessage() for r in warnings] == [
        "the channel layer is unreachable (ConnectionError: redis is down, in publishes); "
        "failures are counted until it is back"
    ]
    assert warnings[0].exc_info is None


def test_a_send_failing_for_a_bug_is_logged_with_its_traceback(
    db, monkeypatch, caplog, django_capture_on_commit_callbacks
):
    from streamsite.streaming import publish as publish_module

    def broken(group, message):
        raise TypeError("cannot serialize")

    monkeypatch.setattr(publish_module, "publish", broken)
    with django_capture_on_commit_callbacks(execute=True):
        publish_on_commit("user.1", {"kind": "created", "id": 1})
    [record] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert record.getMessage() == "publishing to user.1 failed; its subscribers will resync"
    assert record.exc_info is not None


async def test_db_call_sends_what_its_function_published_from_the_loop(
    transactional_db, channel_layer, monkeypatch
):
    """The database thread does not wait for the busy loop to send: the loop sends."""
    import threading

    from streamsite.streaming.db import db_call
    from streamsite.streaming.hub import Hub

    sent_from = []
    real_group_send = channel_layer.group_send

    async def recording_group_send(group, message):
        if group == "k.deferred":
            sent_from.append(threading.current_thread())
        await real_group_send(group, message)

    monkeypatch.setattr(channel_layer, "group_send", recording_group_send)

    sent_when_committed = []

    def write_and_publish():
        with transaction.atomic():
            publish_on_commit("k.deferred", {"n": 1})
        sent_when_committed.append(len(sent_from))  # the thread did not wait for the send

    hub = Hub()
    try:
        async with hub.subscribe("k.deferred", maxsize=10) as subscription:
            await db_call(write_and_publish)
            assert sent_when_committed == [0]
            assert sent_from == [threading.current_thread()]  # sent before db_call returned
            assert await subscription.wait(10)
            assert subscription.take() == [{"n": 1}]
    finally:
        await hub.close()


async def test_db_call_still_publishes_when_its_function_raises_after_a_commit(
    transactional_db, channel_layer
):
    from streamsite.streaming.db import db_call
    from streamsite.streaming.hub import Hub

    def commit_then_fail():
        with transaction.atomic():
            publish_on_commit("k.raised", {"n": 2})
        raise ValueError("after the commit")

    hub = Hub()
    try:
        async with hub.subscribe("k.raised", maxsize=10) as subscription:
            with pytest.raises(ValueError, match="after the commit"):
                await db_call(commit_then_fail)
            assert await subscription.wait(10)
            assert subscription.take() == [{"n": 2}]
    finally:
        await hub.close()
