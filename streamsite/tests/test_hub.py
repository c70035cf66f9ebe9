"""The per-process hub: one membership per key, local fan-out, bounded buffers, recovery."""

import asyncio
import logging
import uuid

import pytest
from channels.layers import InMemoryChannelLayer
from channels_redis.core import RedisChannelLayer

from streamsite.streaming.groups import apply_memberships
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
        for group in ("k.lost", hub.heartbeats.group):
            await channel_layer.group_discard(group, hub.channel)
        assert await next_items(subscription) == [RESYNC]
        await hub.wait_until_settled()
        assert await group_members(channel_layer, "k.lost") == {hub.channel}


async def test_a_dropped_heartbeat_makes_every_stream_resync(hub, channel_layer):
    """Heartbeat 3 arriving after 1 means the layer dropped 2, and events with it."""
    async with hub.subscribe("k.drop", maxsize=10) as subscription:
        hub._dispatch({"type": "hub.heartbeat", "n": hub.heartbeats.received + 1})
        assert subscription.take() == []
        hub._dispatch({"type": "hub.heartbeat", "n": hub.heartbeats.received + 2})
        assert subscription.take() == [RESYNC]


async def test_a_late_heartbeat_with_membership_intact_does_not_resync(
    hub, channel_layer, settings, monkeypatch
):
    """Under load heartbeats queue behind events: the hub checks its membership instead of
    making every stream re-read the database."""
    settings.STREAM_HUB_HEARTBEAT_SECONDS = 0.05
    checked = asyncio.Event()
    answers = []
    real_still_member = hub.heartbeats.still_member

    async def still_member():
        answers.append(await real_still_member())
        checked.set()
        return answers[-1]

    async def no_heartbeats(group, message):
        if group != hub.heartbeats.group:
            await real_group_send(group, message)

    real_group_send = channel_layer.group_send
    monkeypatch.setattr(hub.heartbeats, "still_member", still_member)
    async with hub.subscribe("k.late", maxsize=10) as subscription:
        monkeypatch.setattr(hub.layer, "group_send", no_heartbeats)
        async with asyncio.timeout(10):
            await checked.wait()
        assert answers == [True]
        assert subscription.take() == []


# Batched membership changes (issue 8: 10,000 users arriving queued one round trip each) ----


def fresh_keys(name: str, count: int) -> list[str]:
    """Keys no earlier run left groups behind for, on the shared Redis."""
    prefix = f"k.{name}.{uuid.uuid4().hex[:8]}"
    return [f"{prefix}.{n}" for n in range(count)]


async def subscribe_all(hub: Hub, keys: list[str]) -> list[Subscription]:
    subscriptions = [Subscription(key, maxsize=10) for key in keys]
    await asyncio.gather(*(hub.add(s.key, s) for s in subscriptions))
    return subscriptions


async def members_of_each(layer, keys: list[str]) -> dict[str, set[str]]:
    return {key: await group_members(layer, key) for key in keys}


@pytest.fixture
async def redis_hub(redis_layer):
    """A hub on channels-redis, in both runs (see ``redis_layer``)."""
    hub = Hub(redis_layer)
    yield hub
    await hub.close()


async def test_2000_users_arriving_at_once_join_in_a_few_round_trips(
    redis_hub, redis_layer, redis_round_trips
):
    """Regression: one group_add (two round trips) per key fell 10 s behind and refused
    sockets. Now what arrives while a batch is in flight goes in the next one."""
    keys = fresh_keys("arrive", 2000)
    await subscribe_all(redis_hub, ["k.arrive.first"])  # the hub is started
    redis_round_trips.reset()
    await subscribe_all(redis_hub, keys)
    assert redis_round_trips.membership_changes <= 5
    assert redis_round_trips.commands("ZADD") == 2000  # each key joined once
    assert all(redis_hub.is_member(key) for key in keys)
    members = await members_of_each(redis_layer, keys)
    assert all(found == {redis_hub.channel} for found in members.values())


async def test_a_burst_of_joins_and_leaves_ends_with_exactly_the_wanted_memberships(
    any_layer, redis_round_trips
):
    """Keys left and re-joined over and over, concurrently, across batches: each ends as
    its last change wants it (the even keys joined, the odd ones left)."""
    hub = Hub(any_layer)
    keys = fresh_keys("burst", 300)

    async def churn(index: int, key: str) -> None:
        for _ in range(3 + index % 3):
            async with hub.subscribe(key, maxsize=10):
                await asyncio.sleep(0)
        if index % 2 == 0:
            await hub.add(key, Subscription(key, maxsize=10))

    try:
        await subscribe_all(hub, ["k.burst.first"])  # the hub is started
        redis_round_trips.reset()
        await asyncio.gather(*(churn(index, key) for index, key in enumerate(keys)))
        await hub.wait_until_settled()
        wanted = {key: {hub.channel} if index % 2 == 0 else set() for index, key in enumerate(keys)}
        assert await members_of_each(any_layer, keys) == wanted
        assert {key for key in keys if hub.is_member(key)} == set(keys[::2])
        assert {key for key in keys if key in hub._keys} == set(keys[::2])  # nothing leaks
        if isinstance(any_layer, RedisChannelLayer):
            # 300 keys x 3-5 joins and leaves: 2,400 changes, old code a round trip each.
            assert redis_round_trips.membership_changes <= 100
        await any_layer.group_send(keys[0], event_message(keys[0], {"n": 0}))
        (subscription,) = hub._keys[keys[0]].subscriptions
        assert await next_items(subscription) == [{"n": 0}]
    finally:
        await hub.close()


class HeldLayer(InMemoryChannelLayer):
    """An in-memory layer that holds the joins and leaves of ``k.held`` until released."""

    def __init__(self) -> None:
        super().__init__()
        self.reached = {"add": asyncio.Event(), "discard": asyncio.Event()}
        self.release = {"add": asyncio.Event(), "discard": asyncio.Event()}

    async def group_add(self, group, channel):
        await self._hold("add", group)
        await super().group_add(group, channel)

    async def group_discard(self, group, channel):
        await self._hold("discard", group)
        await super().group_discard(group, channel)

    async def _hold(self, change: str, group: str) -> None:
        if group == "k.held":
            self.reached[change].set()
            async with asyncio.timeout(10):
                await self.release[change].wait()

    async def in_flight(self, change: str) -> None:
        async with asyncio.timeout(10):
            await self.reached[change].wait()


async def still_waiting(task: asyncio.Future) -> bool:
    """True if ``task`` has not finished after many turns of the loop (it must not: what
    would finish it is held)."""
    await asyncio.wait({task}, timeout=0.2)
    return not task.done()


async def test_a_subscriber_arriving_while_its_key_is_left_waits_for_the_rejoin():
    layer = HeldLayer()
    layer.release["add"].set()
    hub = Hub(layer)
    try:
        async with hub.subscribe("k.held", maxsize=10):
            pass
        await layer.in_flight("discard")
        layer.release["add"].clear()
        layer.reached["add"].clear()

        async def arrive() -> set[str]:
            await hub.add("k.held", Subscription("k.held", maxsize=10))
            return await group_members(layer, "k.held")  # at the moment add() returned

        arriving = asyncio.ensure_future(arrive())
        assert await still_waiting(arriving)  # not released by a membership being left
        layer.release["discard"].set()
        await layer.in_flight("add")
        assert await still_waiting(arriving)  # nor before the re-join landed
        layer.release["add"].set()
        assert await arriving == {hub.channel}
        assert hub.is_member("k.held")
    finally:
        layer.release["add"].set()
        layer.release["discard"].set()
        await hub.close()


async def test_a_subscriber_leaving_while_its_key_is_joined_leaves_the_group():
    layer = HeldLayer()
    layer.release["discard"].set()
    hub = Hub(layer)
    subscription = Subscription("k.held", maxsize=10)
    try:
        joining = asyncio.ensure_future(hub.add("k.held", subscription))
        await layer.in_flight("add")
        joining.cancel()
        hub.remove("k.held", subscription)  # as a socket closed while connecting does
        layer.release["add"].set()
        await hub.wait_until_settled()
        assert await group_members(layer, "k.held") == set()
        assert not hub.is_member("k.held")
        assert hub.local_subscriber_count() == 0
    finally:
        layer.release["add"].set()
        await hub.close()


async def test_renewal_of_2000_keys_is_batched(redis_hub, redis_layer, redis_round_trips):
    keys = fresh_keys("renew", 2000)
    await subscribe_all(redis_hub, keys)
    await apply_memberships(redis_layer, redis_hub.channel, discard=keys)  # as expiry would
    redis_round_trips.reset()
    await redis_hub.renew_memberships()
    assert redis_round_trips.membership_changes <= 5
    members = await members_of_each(redis_layer, keys)
    assert all(found == {redis_hub.channel} for found in members.values())


async def test_a_renewal_does_not_undo_leaves(redis_hub, redis_layer):
    """Regression: a renewal re-added groups the worker was leaving at the same time (it
    had its own list of them); now it goes through the worker, in order with the leaves."""
    keys = fresh_keys("left", 200)
    for subscription in await subscribe_all(redis_hub, keys):
        redis_hub.remove(subscription.key, subscription)
    await redis_hub.renew_memberships()
    await redis_hub.wait_until_settled()
    assert await members_of_each(redis_layer, keys) == {key: set() for key in keys}
    assert not any(redis_hub.is_member(key) for key in keys)


async def test_rejoining_2000_keys_after_a_failure_is_batched_and_resyncs_each(
    redis_hub, redis_layer, redis_round_trips
):
    keys = fresh_keys("rejoin", 2000)
    subscriptions = await subscribe_all(redis_hub, keys)
    await apply_memberships(redis_layer, redis_hub.channel, discard=keys)  # Redis restarted
    redis_round_trips.reset()
    await redis_hub._rejoin_after_failure()
    await redis_hub.wait_until_settled()
    assert redis_round_trips.membership_changes <= 6
    assert all(subscription.take() == [RESYNC] for subscription in subscriptions)
    members = await members_of_each(redis_layer, keys)
    assert all(found == {redis_hub.channel} for found in members.values())


async def test_an_invalid_key_is_refused_at_once_and_blocks_no_one(hub, channel_layer):
    """Regression: a key the layer refuses used to be retried forever, ahead of others."""
    with pytest.raises(TypeError):
        await hub.add("not a key!", Subscription("not a key!", maxsize=10))
    async with hub.subscribe("k.valid", maxsize=10):
        assert await group_members(channel_layer, "k.valid") == {hub.channel}


async def test_changes_that_failed_are_retried_without_losing_keys(private_redis):
    layer = RedisChannelLayer(hosts=[{"address": private_redis.url, "socket_timeout": None}])
    hub = Hub(layer)
    keys = fresh_keys("retry", 100)
    failed = asyncio.Event()

    class NoticeRetries(logging.Handler):
        def emit(self, record):
            if "hub membership changes (retried) failed" in record.getMessage():
                failed.set()

    notice = NoticeRetries()
    # Failures of an unreachable layer are counted, and each logged at DEBUG only.
    outage_logger = logging.getLogger("streamsite.streaming.outage")
    level = outage_logger.level
    outage_logger.setLevel(logging.DEBUG)
    outage_logger.addHandler(notice)
    try:
        await subscribe_all(hub, ["k.retry.first"])  # the hub is started
        private_redis.stop()
        arriving = asyncio.ensure_future(subscribe_all(hub, keys))
        async with asyncio.timeout(10):
            await failed.wait()
        private_redis.start()
        await arriving
        await hub.wait_until_settled()
        members = await members_of_each(layer, keys)
        assert all(found == {hub.channel} for found in members.values())
    finally:
        outage_logger.removeHandler(notice)
        outage_logger.setLevel(level)
        await hub.close()
        await layer.flush()


async def test_a_resync_message_resyncs_only_the_keys_it_names(hub, channel_layer):
    """A publisher whose sends failed names their keys once the layer is back."""
    from streamsite.streaming.messages import resync_message

    async with (
        hub.subscribe("k.lost", maxsize=10) as lost,
        hub.subscribe("k.fine", maxsize=10) as fine,
    ):
        await channel_layer.group_send(HUB_GROUP, resync_message(["k.lost", "k.unknown"]))
        # After the resync, through the same channel: what k.fine gets first is this.
        await channel_layer.group_send("k.fine", event_message("k.fine", {"n": 1}))
        assert await next_items(lost) == [RESYNC]
        assert await next_items(fine) == [{"n": 1}]


async def test_end_streams_ends_every_subscription_now_and_later_ones_at_once(hub):
    """Shutdown (streamsite.lifespan): streams end, their clients reconnect elsewhere."""
    async with (
        hub.subscribe("k.one", maxsize=10) as one,
        hub.subscribe("k.two", maxsize=10) as two,
    ):
        assert hub.end_streams() == 2
        for subscription in (one, two):
            assert await subscription.wait(None)
            assert subscription.overflowed and subscription.restarting
        async with hub.subscribe("k.late", maxsize=10) as late:
            assert late.restarting
