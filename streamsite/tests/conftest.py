"""Fixtures for the streaming plumbing's tests: a channels-redis layer in every run, and a
count of the round trips this process makes to Redis."""

from __future__ import annotations

import pytest
from channels.layers import InMemoryChannelLayer
from channels_redis.core import RedisChannelLayer
from redis.asyncio.connection import AbstractConnection


@pytest.fixture
async def redis_layer(request, channel_layer):
    """A channels-redis layer on both backends: the project's when it is Redis, else one of
    the project's class on a private redis-server (so the Redis-only batching is tested in
    the embedded run too)."""
    from streamsite.streaming.layer import RedisChannelLayer as ProjectLayer

    if isinstance(channel_layer, RedisChannelLayer):
        yield channel_layer
        return
    private = request.getfixturevalue("private_redis")
    layer = ProjectLayer(hosts=[{"address": private.url, "socket_timeout": None}])
    yield layer
    await layer.flush()


@pytest.fixture(params=["in-memory", "redis"])
def any_layer(request):
    """Each kind of layer the hub knows: the in-memory one (per-key calls), channels-redis
    (pipelines)."""
    if request.param == "in-memory":
        return InMemoryChannelLayer()
    return request.getfixturevalue("redis_layer")


class RoundTrips:
    """What this process sent to Redis, one entry per round trip (a pipeline is one)."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def reset(self) -> None:
        self.sent.clear()

    def commands(self, name: str) -> int:
        """How many ``name`` commands were sent, in all round trips."""
        token = f"\r\n{name}\r\n".encode()
        return sum(payload.count(token) for payload in self.sent)

    def with_any(self, *names: str) -> int:
        """How many round trips carried at least one of the commands ``names``."""
        tokens = [f"\r\n{name}\r\n".encode() for name in names]
        return sum(any(token in payload for token in tokens) for payload in self.sent)

    @property
    def membership_changes(self) -> int:
        """Round trips that joined or left a group (``ZADD`` to a group, ``ZREM``)."""
        return self.with_any("ZADD", "ZREM")


@pytest.fixture
def redis_round_trips(monkeypatch):
    """Count every command sent to Redis by this process (it still goes to Redis)."""
    trips = RoundTrips()
    real = AbstractConnection.send_packed_command

    async def counting(self, command, *args, **kwargs):
        if isinstance(command, str):
            payload = command.encode()
        elif isinstance(command, bytes):
            payload = command
        else:
            payload = b"".join(bytes(part) for part in command)
        trips.sent.append(payload)
        return await real(self, command, *args, **kwargs)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counting)
    return trips
