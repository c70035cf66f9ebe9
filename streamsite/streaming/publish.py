"""Send events to the channel layer once the database has what they announce.

The database is the source of truth and the channel layer is a lossy doorbell: an event
published before its row commits can reach a client that then cannot read the row, and an
event lost on the way (capacity, expiry, a Redis restart) is recovered from the database by
id. So services publish only through the ``*_on_commit`` functions here, and every message
goes to the per-process hubs (``streamsite.streaming.hub``), which fan it out locally.

A failed publish is not the end of its event, though: a client that stays connected
through a Redis restart would hear nothing of it if the hubs' own heartbeats came through.
So ``publish_failed`` hands it to ``streamsite.streaming.recovery``, which sends it again
(and has its keys resynced) as soon as the layer takes messages again.
"""

import asyncio
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from asgiref.sync import SyncToAsync, async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from streamsite.observability import metrics
from streamsite.streaming.hub import HUB_GROUP, batch_message, event_message
from streamsite.streaming.messages import PUBLISHED_AT, message_app
from streamsite.streaming.outage import CHANNEL_LAYER, is_connection_error
from streamsite.streaming.recovery import LOST

logger = logging.getLogger(__name__)


def publish_on_commit(key: str, event: dict, *, using: str | None = None) -> None:
    """Send ``event`` to the subscribers of ``key`` after the current transaction commits.

    It costs one channel-layer message per process that has a subscriber of ``key``.
    ``event`` must hold JSON-safe primitives only (Redis layers msgpack-encode it).
    """
    _on_commit(key, event_message(key, event), using)


def publish_batch_on_commit(
    keys: list[str], base: dict, fields: dict[str, list], *, using: str | None = None
) -> None:
    """Send one event per key, ``{**base, field: values[i]}``, after the transaction commits.

    One channel-layer message in all, to every process, however many keys: for thousands
    of recipients this replaces thousands of ``group_send`` calls (each a few Redis round
    trips) with one.
    """
    if keys:
        _on_commit(HUB_GROUP, batch_message(keys, base, fields), using)


def _on_commit(group: str, message: dict, using: str | None) -> None:
    def publish_after_commit() -> None:
        message[PUBLISHED_AT] = time.time()  # committed now: delivery latency starts here
        metrics.events_published.labels(message_app(message), _event_type(message)).inc()
        # A failed send is not raised: what it announced is committed, and its readers
        # resync from the database. ``publish`` is looked up now so tests can wrap it.
        try:
            publish(group, message)
        except Exception as error:
            publish_failed(group, message, error)

    transaction.on_commit(publish_after_commit, using=using)


def _event_type(message: dict) -> str:
    """The event's ``kind`` (each app's few fixed kinds), for a metric label."""
    event = message.get("event") or message.get("base") or {}
    return str(event.get("kind", "unknown"))


_deferred = threading.local()


@contextmanager
def deferred_publishing() -> Iterator[list[tuple[str, dict]]]:
    """Collect what ``publish`` sends in this thread instead of sending it.

    For ``streamsite.streaming.db.db_call``: its thread would otherwise wait in
    ``async_to_sync`` until the busy event loop gets round to the send, holding one of the
    few database threads all that time. The caller sends the list from its loop instead.
    """
    previous = getattr(_deferred, "sends", None)
    sends: list[tuple[str, dict]] = []
    _deferred.sends = sends
    try:
        yield sends
    finally:
        _deferred.sends = previous


def publish(group: str, message: dict) -> None:
    """Send a hub ``message`` to ``group`` now, from synchronous code.

    Inside ``deferred_publishing`` the message is handed to the caller. In a server, sync
    code runs under ``sync_to_async`` and ``async_to_sync`` sends on the server's own loop.
    Elsewhere (``manage.py notify``, a worker, a script) ``async_to_sync`` would create an
    event loop and new Redis connections for every message (about 3 ms each); there the
    message goes through one long-lived loop of this module's instead.
    """
    sends = getattr(_deferred, "sends", None)
    if sends is not None:
        sends.append((group, message))
        return
    layer = get_channel_layer()
    if getattr(SyncToAsync.threadlocal, "main_event_loop", None) is not None:
        async_to_sync(layer.group_send)(group, message)
    else:
        _publisher_loop().send(layer.group_send(group, message))
    LOST.layer_works()


async def apublish(group: str, message: dict) -> None:
    """Send a hub ``message`` to ``group`` now, from asynchronous code."""
    await get_channel_layer().group_send(group, message)
    LOST.layer_works()


def publish_failed(group: str, message: dict, error: Exception) -> None:
    """Note that ``message`` could not be sent: it is sent again once the layer works.

    An unreachable layer is one warning per outage (``CHANNEL_LAYER``), not one per event;
    any other error is a bug and is logged with its traceback. Either way the message is
    sent again, and every hub told to resync its keys, as soon as the layer takes a
    message again (``streamsite.streaming.recovery``).
    """
    metrics.layer_send_failures.inc()
    unreachable = is_connection_error(error)
    if unreachable:
        CHANNEL_LAYER.failed("publishes", error)
    else:
        logger.error("publishing to %s failed; its subscribers will resync", group, exc_info=error)
    # Sending again what the layer refused for a reason of its own would fail again.
    LOST.add(group, message, _loop_for_recovery(), send_again=unreachable)


def _loop_for_recovery() -> asyncio.AbstractEventLoop:
    """The loop to recover on: the running one, the server's, or the publisher loop."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        pass
    loop = getattr(SyncToAsync.threadlocal, "main_event_loop", None)
    if loop is not None and not loop.is_closed():
        return loop
    return _publisher_loop().loop


class _PublisherLoop:
    """An event loop on a daemon thread, for publishing from code that has no loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        thread = threading.Thread(target=self.loop.run_forever, name="publisher", daemon=True)
        thread.start()

    def send(self, coroutine) -> None:
        """Run ``coroutine`` on the loop and wait for it (its errors are raised here)."""
        asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=30)


_publisher: _PublisherLoop | None = None
_publisher_lock = threading.Lock()


def _publisher_loop() -> _PublisherLoop:
    global _publisher
    with _publisher_lock:
        if _publisher is None:
            _publisher = _PublisherLoop()
        return _publisher
