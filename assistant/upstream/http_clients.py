"""The HTTP client the upstream providers share: one ``httpx.AsyncClient`` per event loop.

Why per loop: a client's pooled connections are sockets bound to the loop that opened them,
so a client cannot serve two loops (a server process has one loop for its whole life; each
async test has its own). Why shared: one pool per process instead of a client, and its TLS
context, per answer.

Lifetime: a loop's client is created by its first ``shared_client()`` call and lives until
``aclose_clients()`` is awaited on that loop (at shutdown, and after each test that used
it), or until the loop itself is garbage-collected (the registry holds loops weakly).
Idle pooled connections are rare: a stream closed before the end of its body (after
``[DONE]``, on Stop, on an error) closes its connection rather than pooling it.
"""

from __future__ import annotations

import asyncio
import weakref

import httpx

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
    weakref.WeakKeyDictionary()
)

# No cap on concurrent connections: the assistant limits running answers itself, and a
# capped pool would make an answer wait for another's (a PoolTimeout) rather than start.
LIMITS = httpx.Limits(max_connections=None, max_keepalive_connections=20)

# Each request sets its own; this is for one that forgets.
DEFAULT_TIMEOUT = httpx.Timeout(30)


def shared_client() -> httpx.AsyncClient:
    """Return the running loop's client, creating it on first use (or after it was closed).

    Requests set their own timeouts: providers with different settings share it.
    """
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None or client.is_closed:
        client = httpx.AsyncClient(limits=LIMITS, timeout=DEFAULT_TIMEOUT)
        _clients[loop] = client
    return client


async def aclose_clients() -> None:
    """Close the running loop's client and its pooled connections; a later call makes anew.

    Only the running loop's: another loop's sockets can only be closed from that loop.
    """
    client = _clients.pop(asyncio.get_running_loop(), None)
    if client is not None:
        await client.aclose()
