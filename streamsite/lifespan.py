"""The ASGI lifespan protocol: work a process must do as it stops (uvicorn sends it).

Apps register coroutine functions with ``on_shutdown`` (in ``AppConfig.ready``); when the
server shuts down gracefully (SIGTERM, a deploy), each runs on the server's loop, bounded by
``SHUTDOWN_HOOK_SECONDS``, before the process exits. A crash runs none of them: what they do
must also happen some other way, later (the assistant's sweep of crashed generations).
daphne (``runserver``) sends no lifespan events.

uvicorn sends ``lifespan.shutdown`` only once every connection has closed, and SSE streams
and sockets never close by themselves: it waited out its graceful timeout and then
cancelled thousands of tasks. So at startup the app also hooks the shutdown signal itself
(``_chain_shutdown_signals``): as soon as SIGTERM or SIGINT arrives, before uvicorn starts
waiting, every stream and socket of the process is ended (``Hub.end_streams``: streams
end, sockets close with 1012), and their clients reconnect to another process and resume.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Awaitable, Callable

from streamsite.streaming.hub import end_streams
from streamsite.worker_process import end_with_parent

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


#: The signals after which a server stops gracefully (uvicorn's ``HANDLED_SIGNALS``).
SHUTDOWN_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def begin_shutdown() -> None:
    """End the running loop's streams and sockets now: the server is about to stop."""
    ended = end_streams()
    if ended:
        logger.info("shutting down: ended %d streams and sockets; their clients reconnect", ended)


def _chain_shutdown_signals() -> dict[int, object]:
    """Run ``begin_shutdown`` on the loop when a shutdown signal arrives, then the
    server's own handler. Returns the handlers replaced (to restore them).

    Only a handler the server installed is chained (uvicorn installs its own with
    ``signal.signal`` before it starts the lifespan): the default ones (a test run, a
    server that has none) stay as they are.
    """
    if threading.current_thread() is not threading.main_thread():
        return {}
    loop = asyncio.get_running_loop()
    replaced = {}
    for number in SHUTDOWN_SIGNALS:
        previous = signal.getsignal(number)
        if not callable(previous) or previous is signal.default_int_handler:
            continue

        def on_signal(signum, frame, previous=previous):
            # A signal handler interrupts whatever the loop was doing: only schedule.
            if not loop.is_closed():
                loop.call_soon_threadsafe(begin_shutdown)
            previous(signum, frame)

        signal.signal(number, on_signal)
        replaced[number] = previous
    return replaced


async def lifespan_app(scope, receive, send) -> None:
    """Answer the server's lifespan messages; run the shutdown hooks on shutdown."""
    replaced = {}
    try:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                replaced = _chain_shutdown_signals()
                end_with_parent()  # a worker must not outlive its supervisor
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await run_shutdown_hooks()
                await send({"type": "lifespan.shutdown.complete"})
                return
    finally:
        for number, previous in replaced.items():
            signal.signal(number, previous)
