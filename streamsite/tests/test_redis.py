"""The per-loop Redis client for shared state, and Lua scripts that load themselves."""

import asyncio
import uuid

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from streamsite.streaming.redis import LuaScript, close_redis, get_redis
from streamsite.testing.services import skip_or_fail

pytestmark = pytest.mark.timeout(10)

#: A database of these tests' own on the machine's (or CI's) Redis.
DEDICATED_URL = "redis://127.0.0.1:6379/13"


@pytest.fixture
async def dedicated_redis(settings):
    """The running loop's client on a database of these tests, closed after the test."""
    settings.REDIS_URL = DEDICATED_URL
    client = get_redis()
    try:
        await client.ping()
    except (RedisConnectionError, OSError):
        await close_redis()
        skip_or_fail(f"Redis is unreachable at {DEDICATED_URL}")
    yield client
    await close_redis()


async def test_no_client_without_redis_url(settings):
    settings.REDIS_URL = ""
    assert get_redis() is None


async def test_one_client_per_loop_and_url(dedicated_redis, settings):
    assert get_redis() is dedicated_redis
    settings.REDIS_URL = "redis://127.0.0.1:6379/12"
    other = get_redis()
    assert other is not dedicated_redis
    assert other.connection_pool.connection_kwargs["db"] == 12
    settings.REDIS_URL = DEDICATED_URL
    assert get_redis() is dedicated_redis


def test_each_event_loop_gets_its_own_client(settings):
    """A client's connections belong to the loop they were opened on: never share one."""
    settings.REDIS_URL = DEDICATED_URL

    async def client_of_this_loop():
        client = get_redis()
        assert get_redis() is client
        await close_redis()
        return client

    assert asyncio.run(client_of_this_loop()) is not asyncio.run(client_of_this_loop())


async def test_close_redis_forgets_the_loops_clients(dedicated_redis):
    await close_redis()
    client = get_redis()
    assert client is not dedicated_redis
    assert await client.ping()


async def test_replies_are_decoded_to_str(dedicated_redis):
    key = f"streamsite:test:redis:{uuid.uuid4().hex}"
    try:
        await dedicated_redis.set(key, "héllo", px=5000)
        assert await dedicated_redis.get(key) == "héllo"
    finally:
        await dedicated_redis.delete(key)


async def test_a_script_loads_itself_into_a_server_that_lacks_it(dedicated_redis):
    # A fresh source (and SHA) is unknown to the server, as every script is after a restart.
    script = LuaScript(f"-- {uuid.uuid4().hex}\nreturn {{ARGV[1], #KEYS}}")
    assert await dedicated_redis.script_exists(script.sha) == [False]
    assert await script(dedicated_redis, ["k1", "k2"], ["x"]) == ["x", 2]
    assert await dedicated_redis.script_exists(script.sha) == [True]
    assert await script(dedicated_redis, [], ["y"]) == ["y", 0]


async def test_a_burst_beyond_the_pool_waits_for_a_connection(dedicated_redis):
    """Regression: redis-py 8 caps a pool at 100 connections and its pool raised
    MaxConnectionsError for the 101st command in flight; with 200 assistant answers at once
    the watchers' updates failed that way (bench.assistant, "Too many connections")."""
    key = f"tests:burst:{uuid.uuid4().hex}"
    try:
        counts = await asyncio.gather(*(dedicated_redis.incr(key) for _ in range(300)))
    finally:
        await dedicated_redis.delete(key)

    assert sorted(counts) == list(range(1, 301))
