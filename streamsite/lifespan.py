"""The ASGI lifespan protocol: work a process must do as it stops (uvicorn sends it).

Apps register coroutine functions with ``on_shutdown`` (in ``AppConfig.ready``); when the
server shuts down gracefully (SIGTERM, a deploy), each runs on the server's loop, bounded by
``SHUTDOWN_HOOK_SECONDS``, before the process exits. A crash runs none of them: what they do
must also happen some other way, later (the assistant's sweep of crashed generations).
daphne (``runserver``) sends no lifespan events.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

logger = logging.getLogger(__name__)

#: How long one shutdown hook may take.
SHUTDOWN_HOOK_SECONDS = 5

_shutdown_hooks: list[Callable[[], Awaitable[None]]] = []


def on_shutdown(hook: Callable[[], Awaitable[None]]) -> None:
    """Run ``await hook()`` when the server shuts down gracefully."""
    if hook not in _shutdown_hooks:
        _shutdown_hooks.append(hook)


async def run_shutdown_hooks() -> None:
    for hook in list(_shutdown_hooks):
        try:
            async with asyncio.timeout(SHUTDOWN_HOOK_SECONDS):
                await hook()
        except Exception:
            logger.exception("shutdown hook %s failed", getattr(hook, "__qualname__", hook))


async def lifespan_app(scope, receive, send) -> None:
    """Answer the server's lifespan messages; run the shutdown hooks on shutdown."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await run_shutdown_hooks()
            await send({"type": "lifespan.shutdown.complete"})
            return
