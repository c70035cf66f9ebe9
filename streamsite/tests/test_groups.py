"""Many group memberships per round trip: what channels-redis' group_add/group_discard do,
pipelined per shard; per-key calls on any other layer."""

import uuid

import pytest
from channels.layers import InMemoryChannelLayer
from channels_redis.core import RedisChannelLayer

from streamsite.streaming.groups import apply_memberships, has_member, pipelines
from streamsite.testing.layers import group_members

pytestmark = pytest.mark.usefixtures("channel_layer")


def group_names(count: int) -> list[str]:
    """Groups no other test (or live server on the shared Redis) uses."""
    prefix = f"test.groups.{uuid.uuid4().hex[:12]}"
    return [f"{prefix}.{n}" for n in range(count)]


async def members_of_each(layer, groups: list[str]) -> dict[str, set[str]]:
    return {group: await group_members(layer, group) for group in groups}


async def test_2000_joins_cost_one_round_trip_per_chunk(redis_layer, redis_round_trips):
    groups = group_names(2000)
    channel = await redis_layer.new_channel()
    redis_round_trips.reset()
    await apply_memberships(redis_layer, channel, add=groups, chunk=1000)
    assert redis_round_trips.membership_changes == 2
    assert redis_round_trips.commands("ZADD") == 2000
    assert redis_round_trips.commands("EXPIRE") == 2000
    assert set(map(frozenset, (await members_of_each(redis_layer, groups)).values())) == {
        frozenset({channel})
    }
    redis_round_trips.reset()
    await apply_memberships(redis_layer, channel, discard=groups)
    assert redis_round_trips.membership_changes == 2
    assert redis_round_trips.commands("ZREM") == 2000
    assert all(not members for members in (await members_of_each(redis_layer, groups)).values())


async def test_a_pipelined_join_is_what_group_add_makes(redis_layer):
    """Same key, score and expiry as the layer's own group_add, and group_send reaches it."""
    mine, theirs = group_names(2)
    channel = await redis_layer.new_channel()
    await apply_memberships(redis_layer, channel, add=[mine])
    await redis_layer.group_add(theirs, channel)
    connection = redis_layer.connection(0)
    for group in (mine, theirs):
        key = redis_layer._group_key(group)
        assert 0 < await connection.ttl(key) <= redis_layer.group_expiry
        assert await connection.zscore(key, channel) == pytest.approx(
            await connection.zscore(redis_layer._group_key(theirs), channel), abs=60
        )
    await redis_layer.group_send(mine, {"type": "test.hello"})
    assert await redis_layer.receive(channel) == {"type": "test.hello"}
    await apply_memberships(redis_layer, channel, discard=[mine, theirs])


async def test_each_shard_gets_one_pipeline(redis_layer, redis_round_trips):
    """Two hosts (here the same Redis twice): groups hash to both, one round trip each."""
    host = redis_layer.hosts[0]
    sharded = RedisChannelLayer(hosts=[host, host])
    groups = group_names(200)
    assert {sharded.consistent_hash(group) for group in groups} == {0, 1}
    channel = await sharded.new_channel()
    try:
        redis_round_trips.reset()
        await apply_memberships(sharded, channel, add=groups)
        assert redis_round_trips.membership_changes == 2
        for group in groups:
            assert await has_member(sharded, group, channel)
            await sharded.group_discard(group, channel)
    finally:
        await sharded.flush()


async def test_join_and_leave_in_one_batch(any_layer):
    stay, join, leave = group_names(3)
    channel = await any_layer.new_channel()
    await apply_memberships(any_layer, channel, add=[stay, leave])
    await apply_memberships(any_layer, channel, add=[stay, join], discard=[leave])
    await apply_memberships(any_layer, channel, add=[stay, join], discard=[leave])  # again
    assert await members_of_each(any_layer, [stay, join, leave]) == {
        stay: {channel},
        join: {channel},
        leave: set(),
    }
    await apply_memberships(any_layer, channel, discard=[stay, join])


async def test_an_invalid_group_name_fails_before_anything_is_applied(any_layer):
    (good,) = group_names(1)
    channel = await any_layer.new_channel()
    with pytest.raises(TypeError):
        await apply_memberships(any_layer, channel, add=[good, "not a group!"])
    assert not await has_member(any_layer, good, channel)


async def test_other_layers_get_their_own_per_key_calls(redis_layer):
    """A subclass that changed group_add is not pipelined behind its back."""
    calls = []

    class AuditedLayer(RedisChannelLayer):
        async def group_add(self, group, channel):
            calls.append(group)
            await super().group_add(group, channel)

    audited = AuditedLayer(hosts=redis_layer.hosts)
    groups = group_names(3)
    assert pipelines(redis_layer)
    assert not pipelines(audited)
    assert not pipelines(InMemoryChannelLayer())
    channel = await audited.new_channel()
    try:
        await apply_memberships(audited, channel, add=groups)
        assert calls == groups
        assert all([await has_member(audited, group, channel) for group in groups])
        await apply_memberships(audited, channel, discard=groups)
    finally:
        await audited.flush()


async def test_has_member_reads_the_layers_storage(any_layer):
    (group,) = group_names(1)
    channel = await any_layer.new_channel()
    assert not await has_member(any_layer, group, channel)
    await any_layer.group_add(group, channel)
    assert await has_member(any_layer, group, channel)
    await any_layer.group_discard(group, channel)
    assert not await has_member(object(), group, channel)  # a layer we cannot look into
