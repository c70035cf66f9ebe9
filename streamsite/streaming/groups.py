"""Join and leave many channel-layer groups at once: one round trip per Redis shard.

The channel-layer API changes one membership per call, and channels-redis pays a round trip
or two for each (``ZADD`` + ``EXPIRE``, ``ZREM``). The hub (``streamsite.streaming.hub``)
keeps one membership per key, so a process with 10,000 users online holds 10,000 groups; a
wave of arrivals, a renewal or a re-join after a Redis restart then costs 10,000 awaited
round trips, each waiting its turn in a busy event loop. Here the same commands that
``RedisChannelLayer.group_add`` / ``group_discard`` send are pipelined per shard (no
``MULTI``: each command stands alone, as it does in the layer), so a batch of ``chunk``
keys costs one round trip per shard. Any other layer (the in-memory one, one we do not
know, a subclass that changed ``group_add``) gets the per-key calls: correct, if slower.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

from channels_redis.core import RedisChannelLayer

__all__ = ["CHUNK_KEYS", "apply_memberships", "has_member", "pipelines"]

#: Keys per pipeline: bounds the buffers on both sides, and how long one pipeline holds
#: its connection, when a change is very large (leaving every key on close).
CHUNK_KEYS = 1000


async def apply_memberships(
    layer,
    channel: str,
    *,
    add: Iterable[str] = (),
    discard: Iterable[str] = (),
    chunk: int = CHUNK_KEYS,
) -> None:
    """Put ``channel`` in every group of ``add`` and take it out of every group of ``discard``.

    Idempotent, so a batch that failed half-way can simply be applied again. A group must
    not be in both (the caller decides which state it wants). Raises what the layer raised;
    on Redis an error may leave part of the batch applied.
    """
    add, discard = list(add), list(discard)
    for group in (*add, *discard):
        layer.require_valid_group_name(group)
    layer.require_valid_channel_name(channel)
    if not pipelines(layer):
        for group in add:
            await layer.group_add(group, channel)
        for group in discard:
            await layer.group_discard(group, channel)
        return
    changes = [(group, True) for group in add] + [(group, False) for group in discard]
    for start in range(0, len(changes), chunk):
        await _pipeline_redis(layer, channel, changes[start : start + chunk])


def pipelines(layer) -> bool:
    """Whether ``layer`` is channels-redis' own groups, which ``apply_memberships`` pipelines."""
    cls = type(layer)
    return (
        isinstance(layer, RedisChannelLayer)
        and cls.group_add is RedisChannelLayer.group_add
        and cls.group_discard is RedisChannelLayer.group_discard
        and cls._group_key is RedisChannelLayer._group_key
    )


async def _pipeline_redis(layer, channel: str, changes: list[tuple[str, bool]]) -> None:
    """What ``group_add`` / ``group_discard`` do for each change, one pipeline per shard."""
    now = time.time()  # group_add scores a member with the time it joined
    by_shard: dict[int, list[tuple[str, bool]]] = {}
    for group, join in changes:
        by_shard.setdefault(layer.consistent_hash(group), []).append((group, join))

    async def run(index: int, shard_changes: list[tuple[str, bool]]) -> None:
        async with layer.connection(index).pipeline(transaction=False) as pipe:
            for group, join in shard_changes:
                key = layer._group_key(group)
                if join:
                    pipe.zadd(key, {channel: now})
                    pipe.expire(key, layer.group_expiry)
                else:
                    pipe.zrem(key, channel)
            await pipe.execute()

    # Every shard's pipeline runs to its end before the first error (if any) is raised, so
    # a retry never overlaps a pipeline still in flight.
    results = await asyncio.gather(
        *(run(index, items) for index, items in by_shard.items()), return_exceptions=True
    )
    for result in results:
        if isinstance(result, BaseException):
            raise result


async def has_member(layer, group: str, channel: str) -> bool:
    """Whether ``channel`` is in ``group``, read from the layer's own storage.

    False when the layer is not one whose storage we know: the caller then assumes the
    worst (memberships lost) and joins again, which is idempotent.
    """
    if hasattr(layer, "_group_key") and hasattr(layer, "consistent_hash"):
        # channels-redis: the group is a sorted set of channel names.
        connection = layer.connection(layer.consistent_hash(group))
        return await connection.zscore(layer._group_key(group), channel) is not None
    if isinstance(getattr(layer, "groups", None), dict):  # the in-memory layer
        return channel in layer.groups.get(group, {})
    return False
