"""Whether a conversation is on screen anywhere: counted per process, shared through Redis."""

import time

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from assistant.watchers import Watchers, watchers_key
from streamsite.streaming.redis import close_redis, get_redis
from streamsite.testing.services import skip_or_fail

#: A Redis database of these tests' own, whatever REDIS_URL the run uses.
DEDICATED_URL = "redis://127.0.0.1:6379/11"


async def settle(watchers: Watchers) -> None:
    """Wait for the Redis writes the watchers scheduled (tasks, not timers)."""
    import asyncio

    while watchers._tasks:
        await asyncio.gather(*list(watchers._tasks))


async def test_a_process_knows_its_own_viewers_without_any_shared_store(settings):
    settings.REDIS_URL = ""
    watchers = Watchers()
    assert not await watchers.anyone_watching(7)
    with watchers.watching(7), watchers.watching(7):
        assert await watchers.anyone_watching(7)
    with watchers.watching(7):
        pass
    assert not await watchers.anyone_watching(7) and watchers.counts == {}


@pytest.fixture
async def dedicated_redis(settings):
    settings.REDIS_URL = DEDICATED_URL
    try:
        await get_redis().flushdb()
    except (RedisConnectionError, OSError):
        await close_redis()
        skip_or_fail(f"Redis is unreachable at {DEDICATED_URL}")
    yield get_redis()
    await get_redis().flushdb()
    await close_redis()


async def test_another_process_sees_the_viewers_until_the_last_leaves(dedicated_redis):
    here, there = Watchers(), Watchers()
    with here.watching(3):
        await settle(here)
        assert await there.anyone_watching(3)
        with here.watching(3):
            pass
        await settle(here)
        assert await there.anyone_watching(3)  # one tab of two left
    await settle(here)
    assert not await there.anyone_watching(3)
    await here.close()


async def test_a_crashed_processes_viewers_lapse(dedicated_redis):
    """A process that died never removed its entry: it counts only until its expiry."""
    there = Watchers()
    past = int((time.time() - 1) * 1000)
    await dedicated_redis.zadd(watchers_key(4), {"dead-process": past})
    assert not await there.anyone_watching(4)
    await dedicated_redis.zadd(watchers_key(4), {"live-process": past + 60_000})
    assert await there.anyone_watching(4)
