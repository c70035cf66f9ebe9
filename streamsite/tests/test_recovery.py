"""Publishes that failed are sent again, and their keys resynced, once the layer works.

Issue #13: acked chat messages whose publish failed across a Redis restart never reached
readers that stayed connected. The live regression, with a real Redis restart, is in
test_redis_restart_live.py; here the layer's failures are played by a layer that refuses.
"""

import pytest
from django.db import transaction

from streamsite.streaming.db import db_call
from streamsite.streaming.hub import RESYNC, Subscription
from streamsite.streaming.publish import publish_on_commit
from streamsite.streaming.recovery import LOST


async def items_until(subscription: Subscription, count: int) -> list:
    items = []
    while len(items) < count:
        assert await subscription.wait(10), f"only {items!r} arrived"
        items += subscription.take()
    return items


@pytest.fixture
def refusing_layer(channel_layer, monkeypatch):
    """The project's layer, refusing every send while ``refusing["now"]`` is true."""
    refusing = {"now": False}
    real_group_send = channel_layer.group_send

    async def group_send(group, message):
        if refusing["now"]:
            raise ConnectionError("Redis is restarting")
        await real_group_send(group, message)

    monkeypatch.setattr(channel_layer, "group_send", group_send)
    return refusing


async def test_a_failed_publish_is_sent_again_then_resynced_when_the_layer_is_back(
    transactional_db, hub, refusing_layer
):
    def write_and_publish(n):
        with transaction.atomic():
            publish_on_commit("k.lost", {"n": n})

    async with hub.subscribe("k.lost", maxsize=10) as subscription:
        refusing_layer["now"] = True
        await db_call(write_and_publish, 1)  # committed; its publish fails
        assert LOST.pending()
        refusing_layer["now"] = False
        await db_call(write_and_publish, 2)  # works: the recovery goes now
        items = await items_until(subscription, 3)
    # The lost event is delivered (maybe after a later one: subscribers place events by
    # id), each once, and then every reader of the key re-reads the database.
    events = [item for item in items if item is not RESYNC]
    assert sorted(events, key=lambda event: event["n"]) == [{"n": 1}, {"n": 2}]
    assert items.index(RESYNC) > items.index({"n": 1})
    await LOST.wait_until_recovered()
    assert not LOST.pending()


async def test_recovery_retries_until_the_layer_takes_it(transactional_db, hub, refusing_layer):
    def write_and_publish():
        with transaction.atomic():
            publish_on_commit("k.retried", {"n": 1})

    async with hub.subscribe("k.retried", maxsize=10) as subscription:
        refusing_layer["now"] = True
        await db_call(write_and_publish)
        refusing_layer["now"] = False  # nothing else is published: the retry must do it
        assert await items_until(subscription, 2) == [{"n": 1}, RESYNC]
