"""The per-process hub: one membership per key, local fan-out, bounded buffers, recovery."""

import asyncio

import pytest
from channels_redis.core import RedisChannelLayer

from streamsite.streaming.hub import (
    BATCH_CACHE,
    HUB_GROUP,
    RESYNC,
    Hub,
    Subscription,
    batch_message,
    event_message,
    expand_message,
)
from streamsite.testing.layers import group_members

pytestmark = pytest.mark.usefixtures("channel_layer")


async def next_items(subscription: Subscription, seconds: float = 5) -> list:
    """Wait (bounded) for the subscription to have something, and take it."""
    assert await subscription.wait(seconds), "nothing arrived in time"
    return subscription.take()


async def test_subscribe_returns_once_the_hub_is_a_member(hub, channel_layer):
    async with hub.subscribe("notifications.user.1", maxsize=10) as subscription:
        assert await group_members(channel_layer, "notifications.user.1") == {hub.channel}
        await channel_layer.group_send(
            "notifications.user.1", event_message("notifications.user.1", {"n": 1})
        )
        assert await next_items(subscription) == [{"n": 1}]


async def test_many_local_subscribers_share_one_membership_and_one_message(hub, channel_layer):
    key = "notifications.user.2"
    async with (
        hub.subscribe(key, maxsize=10) as first,
        hub.subscribe(key, maxsize=10) as second,
        hub.subscribe(key, maxsize=10) as third,
    ):
        assert await group_members(channel_layer, key) == {hub.channel}
        assert hub.local_subscriber_count(key) == 3
        await channel_layer.group_send(key, event_message(key, {"n": 2}))
        for subscription in (first, second, third):
            assert await next_items(subscription) == [{"n": 2}]


async def test_the_last_subscriber_leaving_leaves_the_group(hub, channel_layer):
    key = "notifications.user.3"
    async with hub.subscribe(key, maxsize=10):
        async with hub.subscribe(key, maxsize=10):
            pass
        await hub.wait_until_settled()
        assert await group_members(channel_layer, key) == {hub.channel}
    await hub.wait_until_settled()
    assert await group_members(channel_layer, key) == set()
    assert not hub.is_member(key)
    assert hub.local_subscriber_count() == 0


async def test_rejoining_right_after_leaving_keeps_the_membership(hub, channel_layer):
    """A leave and a re-join race; the worker applies them in order, so we stay a member."""
    key = "notifications.user.4"
    for _ in range(5):
        async with hub.subscribe(key, maxsize=10):
            pass
    async with hub.subscribe(key, maxsize=10) as subscription:
        await hub.wait_until_settled()
        assert await group_members(channel_layer, key) == {hub.channel}
        await channel_layer.group_send(key, event_message(key, {"n": 4}))
        assert await next_items(subscription) == [{"n": 4}]


async def test_batch_reaches_only_local_keys_with_their_fields(hub, channel_layer):
    async with (
        hub.subscribe("k.1", maxsize=10) as one,
        hub.subscribe("k.3", maxsize=10) as three,
    ):
        message = batch_message(
            ["k.1", "k.2", "k.3"], {"kind": "created", "title": "hi"}, {"id": [10, 20, 30]}
        )
        await channel_layer.group_send(HUB_GROUP, message)
        [first] = await next_items(one)
        [third] = await next_items(three)
        # One cache shared by the batch's events, for what subscribers build once per batch.
        assert first.pop(BATCH_CACHE) is third.pop(BATCH_CACHE)
        assert first == {"kind": "created", "title": "hi", "id": 10}
        assert third == {"kind": "created", "title": "hi", "id": 30}


def test_batch_fields_must_match_the_keys():
    with pytest.raises(ValueError, match="2 values for 3 keys"):
        batch_message(["a", "b", "c"], {}, {"id": [1, 2]})


def test_expand_message_ignores_unknown_types(caplog):
    assert list(expand_message({"type": "something.else"})) == []
    assert "unknown type" in caplog.text


async def test_overflow_marks_the_subscription_and_drops_its_buffer():
    subscription = Subscription("k", maxsize=3)
    for n in range(3):
        subscription.push(n)
    assert not subscription.overflowed
    subscription.push(3)
    assert subscription.overflowed
    assert subscription.take() == []
    subscription.push(4)
    assert subscription.take() == []
    assert await subscription.wait(5) is True  # wakes at once: the stream must end


async def test_wait_times_out_when_nothing_arrives():
    subscription = Subscription("k", maxsize=3)
    assert await subscription.wait(0.01) is False
    subscription.push("x")
    assert await subscription.wait(5) is True


async def test_wait_is_cancellable_and_leaves_no_timer():
    subscription = Subscription("k", maxsize=3)
    waiting = asyncio.create_task(subscription.wait(60))
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert subscription._waiter is None


async def test_renewal_joins_every_group_again(hub, channel_layer):
    """channels-redis drops members after group_expiry; renewal re-adds ours."""
    async with hub.subscribe("k.renew", maxsize=10):
        await channel_layer.group_discard("k.renew", hub.channel)  # as expiry would
        assert await group_members(channel_layer, "k.renew") == set()
        await hub.renew_memberships()
        assert await group_members(channel_layer, "k.renew") == {hub.channel}


async def test_close_cancels_tasks_and_leaves_groups(channel_layer):
    hub = Hub()
    async with hub.subscribe("k.close", maxsize=10):
        tasks = list(hub._tasks)
        await hub.close()
    assert all(task.done() for task in tasks)
    assert await group_members(channel_layer, "k.close") == set()
    assert hub.channel not in await group_members(channel_layer, HUB_GROUP)


async def test_redis_restart_rejoins_and_resyncs(private_redis, settings):
    """A Redis that restarts empty loses our groups: heartbeats notice, we re-join, RESYNC."""
    settings.STREAM_HUB_HEARTBEAT_SECONDS = 0.2
    layer = RedisChannelLayer(
        hosts=[{"address": private_redis.url, "socket_timeout": None}], capacity=100
    )
    hub = Hub(layer)
    try:
        async with hub.subscribe("k.restart", maxsize=10) as subscription:
            private_redis.restart()
            assert RESYNC in await next_items(subscription, seconds=20)
            await hub.wait_until_settled()
            assert await group_members(layer, "k.restart") == {hub.channel}
            await layer.group_send("k.restart", event_message("k.restart", {"n": 5}))
            items = []
            while {"n": 5} not in items:
                items += await next_items(subscription)
            assert set(map(id, items)) <= {id(RESYNC), id(items[-1])}
    finally:
        await hub.close()
        await layer.flush()


async def test_lost_memberships_are_noticed_by_heartbeats(hub, channel_layer, settings):
    """Groups emptied without any connection error (FLUSHDB, a quick restart redis-py
    reconnects through) still lead to a re-join and a RESYNC."""
    settings.STREAM_HUB_HEARTBEAT_SECONDS = 0.05
    async with hub.subscribe("k.lost", maxsize=10) as subscription:
        for group in ("k.lost", hub._own_group):
            await channel_layer.group_discard(group, hub.channel)
        assert await next_items(subscription) == [RESYNC]
        await hub.wait_until_settled()
        assert await group_members(channel_layer, "k.lost") == {hub.channel}


async def test_a_dropped_heartbeat_makes_every_stream_resync(hub, channel_layer):
    """Heartbeat 3 arriving after 1 means the layer dropped 2, and events with it."""
    async with hub.subscribe("k.drop", maxsize=10) as subscription:
        hub._dispatch({"type": "hub.heartbeat", "n": hub._heartbeats_received + 1})
        assert subscription.take() == []
        hub._dispatch({"type": "hub.heartbeat", "n": hub._heartbeats_received + 2})
        assert subscription.take() == [RESYNC]


async def test_a_late_heartbeat_with_membership_intact_does_not_resync(
    hub, channel_layer, settings, monkeypatch
):
    """Under load heartbeats queue behind events: the hub checks its membership instead of
    making every stream re-read the database."""
    settings.STREAM_HUB_HEARTBEAT_SECONDS = 0.05
    checked = asyncio.Event()
    answers = []
    real_still_member = hub._still_member

    async def still_member():
        answers.append(await real_still_member())
        checked.set()
        return answers[-1]

    async def no_heartbeats(group, message):
        if group != hub._own_group:
            await real_group_send(group, message)

    real_group_send = channel_layer.group_send
    monkeypatch.setattr(hub, "_still_member", still_member)
    async with hub.subscribe("k.late", maxsize=10) as subscription:
        monkeypatch.setattr(hub.layer, "group_send", no_heartbeats)
        async with asyncio.timeout(10):
            await checked.wait()
        assert answers == [True]
        assert subscription.take() == []
