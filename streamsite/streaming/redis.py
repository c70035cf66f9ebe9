"""The process' Redis client for shared state that is not the channel layer.

Rate limits and chat presence must agree across every server process, so with
``settings.REDIS_URL`` set they live in Redis; without it (the embedded, single-process
default) they live in the process and ``get_redis()`` returns None.

A redis.asyncio client belongs to the event loop it first ran on (its connections'
streams do), so there is one client per loop, like the hub: a server process has one loop,
each async test its own. The commands sent are short (a script, a few keys), so redis-py's
default socket timeouts suit them, unlike the channel layer's blocking reads.
"""

from __future__ import annotations

import asyncio
import hashlib
import weakref

import redis.asyncio
from django.conf import settings
from redis.exceptions import NoScriptError

#: Connections one loop's client holds at most. A burst of more commands in flight waits
#: for a free one (up to POOL_TIMEOUT_SECONDS): redis-py 8's default pool raises
#: MaxConnectionsError past 100 instead, and the commands sent here come in bursts (the
#: assistant's watchers leave one conversation per ended stream).
MAX_CONNECTIONS = 100
POOL_TIMEOUT_SECONDS = 10

#: One client per (loop, URL): override_settings may point a test at another database.
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, redis.asyncio.Redis]] = (
    weakref.WeakKeyDictionary()
)


def get_redis() -> redis.asyncio.Redis | None:
    """Return the running loop's client for ``settings.REDIS_URL``, or None without one.

    Replies are decoded to ``str``.
    """
    url = settings.REDIS_URL
    if not url:
        return None
    loop = asyncio.get_running_loop()
    clients = _clients.get(loop)
    if clients is None:
        clients = _clients[loop] = {}
    client = clients.get(url)
    if client is None:
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            url,
            decode_responses=True,
            max_connections=MAX_CONNECTIONS,
            timeout=POOL_TIMEOUT_SECONDS,
        )
        client = clients[url] = redis.asyncio.Redis.from_pool(pool)  # closing it closes the pool
    return client


async def close_redis() -> None:
    """Close the running loop's clients, if it has any (for shutdown and tests)."""
    clients = _clients.pop(asyncio.get_running_loop(), {})
    for client in clients.values():
        await client.aclose()


class LuaScript:
    """A Lua script sent by its SHA1, and loaded once into a server that lacks it.

    Unlike redis-py's ``register_script`` it is bound to no client, so one module-level
    script serves every loop's client.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    async def __call__(self, client: redis.asyncio.Redis, keys: list[str], args: list) -> object:
        """Run the script on ``client`` and return its reply."""
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            # A new or restarted server: load it (the SHA stays the same) and try again.
            await client.script_load(self.source)
            return await client.evalsha(self.sha, len(keys), *keys, *args)
