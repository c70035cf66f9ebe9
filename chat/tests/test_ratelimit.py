"""The per-user send rate limit: a sliding window shared by every socket and process.

The tests run on the backend the settings choose (in-process without REDIS_URL, Redis with
it); the ones that need Redis whatever the settings use a database of their own.
"""

import asyncio
import contextlib
import logging
import secrets
import time

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from chat import ratelimit
from chat.ratelimit import acheck_send_rate, rate_key
from streamsite.streaming.redis import close_redis, get_redis
from streamsite.testing.services import skip_or_fail

pytestmark = pytest.mark.timeout(10)

#: A database of these tests' own, for tests that need Redis whatever the settings say.
DEDICATED_URL = "redis://127.0.0.1:6379/13"


@pytest.fixture
async def user_ids(settings):
    """Fresh user ids (``user_ids()``); their windows are deleted from Redis after the test.

    Random and large, so runs sharing a Redis never count each other's sends.
    """
    used: list[int] = []

    def new_id() -> int:
        used.append(10**9 + secrets.randbelow(10**9))
        return used[-1]

    yield new_id
    client = get_redis()
    if client is not None and used:
        with contextlib.suppress(RedisConnectionError, OSError):  # a Redis not there
            await client.delete(*(rate_key(user_id) for user_id in used))
    await close_redis()


@pytest.fixture
async def dedicated_redis(settings):
    """Point the settings at a Redis database of these tests' own (skip or fail if none)."""
    settings.REDIS_URL = DEDICATED_URL
    try:
        await get_redis().ping()
    except (RedisConnectionError, OSError):
        await close_redis()
        skip_or_fail(f"Redis is unreachable at {DEDICATED_URL}")


def window(settings, messages: int, seconds: float) -> None:
    settings.CHAT_RATE_LIMIT_MESSAGES = messages
    settings.CHAT_RATE_LIMIT_SECONDS = seconds


async def test_allows_the_limit_then_refuses_with_retry_after(settings, user_ids):
    window(settings, 3, 2)
    user = user_ids()
    assert [await acheck_send_rate(user) for _ in range(3)] == [None, None, None]
    retry_after = await acheck_send_rate(user)
    assert retry_after is not None
    assert 1.5 < retry_after <= 2


async def test_the_window_slides(settings, user_ids):
    """After the oldest send leaves the window one more is allowed, not a whole new window."""
    window(settings, 2, 0.6)
    user = user_ids()
    assert await acheck_send_rate(user) is None
    first_at = time.monotonic()
    await asyncio.sleep(0.3)  # spacing the two sends, not waiting for something to happen
    assert await acheck_send_rate(user) is None
    second_at = time.monotonic()
    retry_after = await acheck_send_rate(user)
    assert retry_after == pytest.approx(first_at + 0.6 - time.monotonic(), abs=0.05)

    await asyncio.sleep(retry_after + 0.01)
    assert await acheck_send_rate(user) is None  # the first send's slot
    retry_after = await acheck_send_rate(user)  # the second send still counts
    assert retry_after == pytest.approx(second_at + 0.6 - time.monotonic(), abs=0.05)


async def test_refused_attempts_are_not_counted(settings, user_ids):
    """A client hammering while limited gets in as soon as the window allows."""
    window(settings, 1, 0.3)
    user = user_ids()
    assert await acheck_send_rate(user) is None
    started = time.monotonic()
    deadline = started + 2
    while (retry_after := await acheck_send_rate(user)) is not None:
        assert time.monotonic() < deadline, "still refused long after the window"
        await asyncio.sleep(min(retry_after, 0.02))
    assert time.monotonic() - started < 0.3 + 0.1


async def test_each_user_has_a_window_of_their_own(settings, user_ids):
    window(settings, 1, 5)
    alice, bob = user_ids(), user_ids()
    assert await acheck_send_rate(alice) is None
    assert await acheck_send_rate(alice) is not None
    assert await acheck_send_rate(bob) is None


async def test_a_lowered_limit_waits_for_enough_sends_to_leave(settings, user_ids):
    """Three sends counted and a limit of one: only the newest leaving frees a slot."""
    window(settings, 3, 0.6)
    user = user_ids()
    for _ in range(2):
        assert await acheck_send_rate(user) is None
    await asyncio.sleep(0.3)
    assert await acheck_send_rate(user) is None
    settings.CHAT_RATE_LIMIT_MESSAGES = 1
    retry_after = await acheck_send_rate(user)
    assert 0.5 < retry_after <= 0.6  # the newest send, not the oldest (0.3 s)


async def test_the_limit_holds_across_processes_on_redis(settings, dedicated_redis, user_ids):
    """Two event loops are two processes' clients: the window is the user's, in Redis."""
    window(settings, 2, 5)
    user = user_ids()
    assert await acheck_send_rate(user) is None

    def other_process() -> list:
        async def sends():
            try:
                return [await acheck_send_rate(user) for _ in range(2)]
            finally:
                await close_redis()

        return asyncio.run(sends())

    allowed, refused = await asyncio.to_thread(other_process)
    assert allowed is None
    assert refused is not None
    assert await acheck_send_rate(user) is not None


async def test_redis_down_allows_the_send_and_warns(settings, user_ids, caplog):
    """Failing open: an outage of the limiter must not become an outage of the chat."""
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    window(settings, 1, 5)
    user = user_ids()
    assert [await acheck_send_rate(user) for _ in range(3)] == [None, None, None]
    # One warning for the outage (streamsite.streaming.outage), the other failures counted.
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "in rate limit checks (allowed)" in warnings[0], warnings


async def test_in_process_windows_forget_idle_users(settings, user_ids):
    settings.REDIS_URL = ""
    window(settings, 5, 0.05)
    idle, active = user_ids(), user_ids()
    assert await acheck_send_rate(idle) is None
    await asyncio.sleep(0.06)  # let the idle user's send leave the window
    assert await acheck_send_rate(active) is None
    sends = ratelimit._windows[asyncio.get_running_loop()].sends
    assert set(sends) == {active}
