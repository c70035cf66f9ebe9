"""How often one user may send chat messages, across all their sockets and processes.

A true sliding window: a send is allowed when fewer than ``CHAT_RATE_LIMIT_MESSAGES`` sends
were allowed in the last ``CHAT_RATE_LIMIT_SECONDS``. Fixed windows let a user send twice
the limit around a window's edge; a sliding one never does. Refused attempts are not
counted, so a client that keeps retrying is let through as soon as the window allows.

With ``settings.REDIS_URL`` the window is a sorted set of send times per user in Redis,
changed by one atomic script (processes never race, and Redis' clock is the only clock, so
the servers' clocks need not agree). Without it the window is a deque in the process.

The limiter fails open: when Redis is unreachable a send is allowed and a warning logged.
Refusing every message because the limiter is down would turn an outage of a protection
into an outage of the chat.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
import weakref
from collections import deque

from django.conf import settings

from streamsite.streaming.outage import SHARED_REDIS, report_failure
from streamsite.streaming.redis import LuaScript, get_redis

logger = logging.getLogger(__name__)

# KEYS[1]: the user's window. ARGV: window (ms), limit, a unique member for this send.
# Returns -1 when the send is allowed (and counted), else the milliseconds until it would be.
_CHECK_SEND_RATE = LuaScript("""
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
if count < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
  return -1
end
-- Allowed again once all but limit - 1 of the counted sends have left the window (more
-- than limit are counted only if the limit was lowered).
local oldest = redis.call('ZRANGE', KEYS[1], count - limit, count - limit, 'WITHSCORES')
return tonumber(oldest[2]) + window - now
""")


def rate_key(user_id: int) -> str:
    """The Redis key of one user's window of sends."""
    return f"streamsite:chat:rate:{int(user_id)}"


async def acheck_send_rate(user_id: int) -> float | None:
    """Count one send by the user; return None if allowed, else seconds until it would be.

    A refused send is not counted. Never raises (Redis errors allow the send).
    """
    limit = max(1, int(settings.CHAT_RATE_LIMIT_MESSAGES))
    window = settings.CHAT_RATE_LIMIT_SECONDS
    client = get_redis()
    if client is None:
        return _check_in_process(user_id, limit, window)
    window_ms = max(1, round(window * 1000))
    try:
        retry_ms = await _CHECK_SEND_RATE(
            client, [rate_key(user_id)], [window_ms, limit, uuid.uuid4().hex]
        )
    except Exception as error:
        report_failure(SHARED_REDIS, "rate limit checks (allowed)", error, logger)
        return None
    SHARED_REDIS.succeeded()
    if retry_ms < 0:
        return None
    return max(int(retry_ms), 1) / 1000


class _Windows:
    """The send times of each user in this process, oldest first."""

    def __init__(self) -> None:
        self.sends: dict[int, deque[float]] = {}
        self.swept_at = time.monotonic()


# One set of windows per event loop, like the hub: each async test starts empty.
_windows: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Windows] = (
    weakref.WeakKeyDictionary()
)


def _check_in_process(user_id: int, limit: int, window: float) -> float | None:
    loop = asyncio.get_running_loop()
    windows = _windows.get(loop)
    if windows is None:
        windows = _windows[loop] = _Windows()
    now = time.monotonic()
    horizon = now - window
    sends = windows.sends.setdefault(user_id, deque())
    while sends and sends[0] <= horizon:
        sends.popleft()
    if len(sends) < limit:
        sends.append(now)
        retry_after = None
    else:
        retry_after = max(sends[len(sends) - limit] - horizon, 0.001)
    if now - windows.swept_at > window:
        # Forget users whose sends have all left the window, so the dict stays as small as
        # the set of recent senders (at most once a window: amortised O(1) per send).
        windows.swept_at = now
        for idle in [
            uid for uid, times in windows.sends.items() if not times or times[-1] <= horizon
        ]:
            del windows.sends[idle]
    return retry_after
