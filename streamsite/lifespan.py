"""The ASGI lifespan protocol: work a process must do as it stops (uvicorn sends it).

Apps register coroutine functions with ``on_shutdown`` (in ``AppConfig.ready``); when the
server shuts down gracefully (SIGTERM, a deploy), each runs on the server's loop, bounded by
``SHUTDOWN_HOOK_SECONDS``, before the process exits. A crash runs none of them: what they do
must also happen some other way, later (the assistant's sweep of crashed generations).
daphne (``runserver``) sends no lifespan events.

uvicorn sends ``lifespan.shutdown`` only once every connection has closed, and streams and
sockets never close by themselves: so at startup the app hooks the shutdown signal too
(``streamsite.shutdown``), which ends them all at once; and a worker asks to end with its
supervisor (``streamsite.worker_process``).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable

from django.conf import settings

from streamsite.gc_policy import garbage_collector_tune
from streamsite.observability.workers import worker_ended
from streamsite.shutdown import chain_shutdown_signals
from streamsite.worker_process import end_with_parent

logger = logging.getLogger(__name__)

#: How long one shutdown hook may take.
SHUTDOWN_HOOK_SECONDS = 5

_shutdown_hooks: list[Callable[[], Awaitable[None]]] = []
_startup_hooks: list[Callable[[], None]] = []


def on_startup(hook: Callable[[], None]) -> None:
    """Call ``hook()`` on the server's loop when it starts (uvicorn; daphne sends nothing).

    For starting background work a process needs before its first request (the live
    dashboard's listener): it must return at once and start tasks, not await them.
    """
    if hook not in _startup_hooks:
        _startup_hooks.append(hook)


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
    replaced = {}
    try:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                replaced = chain_shutdown_signals()
                end_with_parent()  # a worker must not outlive its supervisor
                for hook in list(_startup_hooks):
                    try:
                        hook()
                    except Exception:
                        logger.exception(
                            "startup hook %s failed", getattr(hook, "__qualname__", hook)
                        )
                # The app is loaded: freeze it and run the collector for serving.
                garbage_collector_tune(settings.GC_YOUNG_THRESHOLD)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await run_shutdown_hooks()
                worker_ended()
                await send({"type": "lifespan.shutdown.complete"})
                return
    finally:
        for number, previous in replaced.items():
            signal.signal(number, previous)
