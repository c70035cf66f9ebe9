"""End every stream and socket as soon as the server is told to stop.

SSE streams and chat sockets never end by themselves. uvicorn, on SIGTERM, closes its
listening socket and then waits for every connection to close, up to its graceful timeout
(5 s in ``serve``), before it cancels what is left: thousands of tasks, each logged as
"Exception in ASGI application ... CancelledError", and clients cut off with nothing to
tell them why. Here the stop is noticed first, and each process ends its streams and
sockets at once (``Hub.end_streams``): a stream returns (its client reconnects after the
``retry`` it was given, with ``Last-Event-ID``), and a socket closes with 1012, "service
restart" (its client reconnects and sends ``resume``). uvicorn then finds nothing to wait
for, and its lifespan shutdown runs at once.

- Under uvicorn (``serve``), the ASGI lifespan startup chains uvicorn's own signal
  handlers (``chain_shutdown_signals``).
- Under ``runserver`` (daphne with Django's autoreloader), a code change restarts the
  process with ``sys.exit`` from the reloader thread: ``end_streams_before_reload``,
  connected to ``autoreload.file_changed``, ends the streams on daphne's loop first.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading

from streamsite.streaming.hub import all_hubs, end_streams

logger = logging.getLogger(__name__)

#: The signals after which a server stops gracefully (uvicorn's ``HANDLED_SIGNALS``).
SHUTDOWN_SIGNALS = (signal.SIGTERM, signal.SIGINT)
#: How long a reload waits for sockets to send their close frames.
RELOAD_DRAIN_SECONDS = 1.0


def begin_shutdown() -> None:
    """End the running loop's streams and sockets now: the server is about to stop."""
    ended = end_streams()
    if ended:
        logger.info("shutting down: ended %d streams and sockets; their clients reconnect", ended)


def chain_shutdown_signals() -> dict[int, object]:
    """Run ``begin_shutdown`` on the running loop when a shutdown signal arrives, then
    the server's own handler. Returns the handlers replaced, to restore them.

    Only a handler the server installed is chained (uvicorn installs its own with
    ``signal.signal`` before it starts the lifespan): the defaults (a test run, a server
    that has none) stay as they are.
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


def end_streams_before_reload(sender, file_path, **kwargs) -> None:
    """``autoreload.file_changed`` receiver: end every stream before ``runserver`` reloads.

    Runs in the reloader's thread; each hub's loop (daphne's) ends its streams and this
    waits, briefly, until their subscriptions are gone (the sockets' close frames sent).
    Returns None, so the reload goes ahead.
    """
    for loop, hub in all_hubs():
        if loop.is_closed():
            continue
        ended = asyncio.run_coroutine_threadsafe(_end_and_drain(hub), loop)
        try:
            ended.result(RELOAD_DRAIN_SECONDS + 1)
        except TimeoutError:
            logger.info("reloading with %d subscriptions left open", hub.local_subscriber_count())


async def _end_and_drain(hub) -> None:
    hub.end_streams()
    async with asyncio.timeout(RELOAD_DRAIN_SECONDS):
        await hub.wait_until_drained()
