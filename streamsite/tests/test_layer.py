"""The project's channels-redis layer: batched receives (``receive_batch``), on real Redis."""

import asyncio

import pytest

from streamsite.streaming.layer import RECEIVE_BATCH, RedisChannelLayer

pytestmark = pytest.mark.usefixtures("channel_layer")


@pytest.fixture
def layer(redis_layer):
    """The project's layer class on real Redis (``conftest.redis_layer``)."""
    assert isinstance(redis_layer, RedisChannelLayer)
    return redis_layer


async def waiting_in_redis(layer, channel: str) -> tuple[int, int]:
    """How many messages wait on the channel's process queue, and in its backup queue."""
    await layer.wait_received()  # the cleanups of what was received
    key = layer.prefix + layer.non_local_name(channel)
    connection = layer.connection(layer.consistent_hash(layer.non_local_name(channel)))
    return await connection.zcard(key), await connection.zcard(layer._backup_channel_name(key))


async def test_what_waits_comes_in_one_batch_in_order_and_leaves_nothing_behind(
    layer, redis_round_trips
):
    channel = await layer.new_channel()
    for n in range(5):
        await layer.send(channel, {"type": "test", "n": n})
    redis_round_trips.reset()
    batch = await layer.receive_batch(channel)
    assert [message["n"] for message in batch] == [0, 1, 2, 3, 4]
    # One blocking pop for the first (channels-redis' own), one script for the rest.
    assert redis_round_trips.commands("BZPOPMIN") == 1
    assert redis_round_trips.commands("EVAL") == 2  # its backup restore, and ours
    assert await waiting_in_redis(layer, channel) == (0, 0)


async def test_a_batch_stops_at_the_limit_and_the_rest_follows(layer):
    channel = await layer.new_channel()
    for n in range(RECEIVE_BATCH + 8):
        await layer.send(channel, {"type": "test", "n": n})
    first = await layer.receive_batch(channel)
    second = await layer.receive_batch(channel)
    assert [m["n"] for m in first] == list(range(RECEIVE_BATCH))
    assert [m["n"] for m in second] == list(range(RECEIVE_BATCH, RECEIVE_BATCH + 8))
    assert await waiting_in_redis(layer, channel) == (0, 0)


async def test_one_message_alone_is_a_batch_of_one(layer):
    channel = await layer.new_channel()
    receiving = asyncio.ensure_future(layer.receive_batch(channel))
    await layer.send(channel, {"type": "test", "n": 1})
    assert await asyncio.wait_for(receiving, 10) == [{"type": "test", "n": 1}]
    assert await waiting_in_redis(layer, channel) == (0, 0)


async def test_another_channels_messages_stay_for_its_own_receive(layer):
    """Both channels of this process share one queue in Redis: what the batch takes for
    the other channel is kept, in order, for that channel's ``receive``."""
    mine, other = await layer.new_channel(), await layer.new_channel()
    for n in range(3):
        await layer.send(mine, {"type": "test", "n": n})
        await layer.send(other, {"type": "test", "n": 10 + n})
    batch = await layer.receive_batch(mine)
    others = [await layer.receive(other) for _ in range(3)]
    while len(batch) < 3:
        batch += await layer.receive_batch(mine)
    assert [m["n"] for m in batch] == [0, 1, 2]
    assert [m["n"] for m in others] == [10, 11, 12]
    assert await waiting_in_redis(layer, mine) == (0, 0)


async def test_a_group_message_for_several_channels_of_this_process_reaches_each(layer):
    """channels-redis sends one copy per process, naming every channel it is for."""
    mine, other = await layer.new_channel(), await layer.new_channel()
    await layer.group_add("batch-group", mine)
    await layer.group_add("batch-group", other)
    await layer.send(mine, {"type": "test", "n": 0})  # so the group message is the second
    await layer.group_send("batch-group", {"type": "test", "n": 1})
    batch = await layer.receive_batch(mine)
    assert [m["n"] for m in batch] == [0, 1]
    assert (await layer.receive(other))["n"] == 1
    assert await waiting_in_redis(layer, mine) == (0, 0)
