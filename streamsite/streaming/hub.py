"""Per-process fan-out: one channel-layer channel and one receive loop for every stream.

The Channels tutorial gives every connection its own channel and group membership, so an
event for a user with three tabs costs three channel-layer messages, three Redis pops and
three dispatches, and every idle connection keeps a blocking receive open. Here each process
has one ``Hub``: it joins the channel-layer group of a key ("notifications.user.42") once,
when the first local stream of that key subscribes, and leaves when the last one goes. An
event therefore costs one channel-layer message per process that has the key, and the hub
hands it to its local subscribers in memory.

Rules this module keeps (each learned the hard way, see docs/architecture.md):

- ``channel_layer.receive()`` is never cancelled by a timeout: a cancelled receive can drop
  a message it already took off Redis. One receive task runs for the hub's lifetime.
- Membership is in place before ``subscribe()`` returns, so a caller that subscribes and then
  replays from the database misses nothing in between. One worker applies the changes, in
  batches (``streamsite.streaming.membership``).
- The layer is lossy, and a Redis restart empties its groups while redis-py quietly
  reconnects. Every few seconds the hub sends a heartbeat through a group of its own; when
  heartbeats stop arriving (or a receive fails) it re-joins its groups and tells every
  subscriber to ``RESYNC`` from the database.
- channels-redis forgets members after ``group_expiry``: the hub renews its memberships.
- A publisher whose send failed tells every hub, once the layer works again, which keys
  lost events (``hub.resync``): those keys' subscribers re-read the database.
- An unreachable layer is one warning when it goes and one when it is back
  (``streamsite.streaming.outage``), not a traceback per failed call.
- When the server shuts down, ``end_streams()`` ends every stream and socket at once: their
  clients reconnect to another process and resume by id.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from channels.layers import get_channel_layer
from django.conf import settings

from streamsite.observability import metrics
from streamsite.streaming.groups import apply_memberships
from streamsite.streaming.heartbeats import HEARTBEAT, Heartbeats
from streamsite.streaming.membership import KeyState, Memberships
from streamsite.streaming.messages import (
    BATCH_CACHE,
    HUB_GROUP,
    PUBLISHED_AT,
    batch_message,
    event_message,
    expand_message,
    message_app,
)
from streamsite.streaming.outage import CHANNEL_LAYER, report_failure
from streamsite.streaming.subscription import RESYNC, Subscription

__all__ = ["HUB_GROUP", "RESYNC", "Hub", "HubUnavailable", "Subscription", "get_hub"]
# Their home is messages.py.
__all__ += ["BATCH_CACHE", "batch_message", "event_message", "expand_message"]

logger = logging.getLogger(__name__)

#: How long ``subscribe()`` waits for the channel layer to accept the membership.
JOIN_TIMEOUT_SECONDS = 10


class HubUnavailable(Exception):
    """The channel layer did not accept a subscription in time."""


class Hub:
    """The process' one channel-layer channel, shared by every stream and socket in it."""

    def __init__(self, layer=None) -> None:
        self.layer = layer or get_channel_layer()
        self.channel: str | None = None
        self._keys: dict[str, KeyState] = {}
        self.memberships = Memberships(self, self._keys)
        self._tasks: list[asyncio.Task] = []
        self._start_lock = asyncio.Lock()
        self._closed = False
        self._ending = False
        self._drained = asyncio.Event()
        # Through a group only this hub is in (``heartbeats.group``): see heartbeats.py.
        self.heartbeats = Heartbeats(self)

    # Public API ------------------------------------------------------------------------

    @property
    def receiving(self) -> bool:
        """Whether the receive loop can deliver: not yet started (nothing to receive yet)
        or still running. False once the hub is closed or the loop's task has ended, which
        only a bug or a close does (``_receive_forever`` retries every failure). For
        ``/readyz``: a check without I/O."""
        if self._closed:
            return False
        return not self._tasks or not self._tasks[0].done()

    @property
    def ending(self) -> bool:
        """Whether the process is ending its streams (shutdown): why a stream ended."""
        return self._ending

    @asynccontextmanager
    async def subscribe(
        self, key: str, *, maxsize: int, into: Subscription | None = None
    ) -> AsyncIterator[Subscription]:
        """Receive the events published to ``key`` until the block exits.

        On entry the hub is a member of ``key``'s group: anything published after this
        returns reaches the subscription. Leaving is synchronous and immediate. With
        ``into``, the events of ``key`` go to that existing subscription (one buffer and
        one reader for several keys; ``maxsize`` is then the existing one's).
        """
        subscription = into if into is not None else Subscription(key, maxsize)
        try:
            await self.add(key, subscription)
            yield subscription
        finally:
            # Short and synchronous: it runs while the stream is being cancelled.
            self.remove(key, subscription)

    async def add(self, key: str, subscription: Subscription) -> None:
        """``subscribe()`` without a context manager, for owners that keep many (sockets):
        the events of ``key`` go to ``subscription`` once this returns. Always pair with
        ``remove()``, even when this raised or was cancelled."""
        self.layer.require_valid_group_name(key)  # a bad key must not poison a batch
        if self._ending:
            subscription.end()  # the server is shutting down: the client goes elsewhere
            return
        await self._ensure_started()
        entry = self._keys.get(key)
        if entry is None:
            entry = self._keys[key] = KeyState()
        if subscription not in entry.subscriptions:
            entry.subscriptions.add(subscription)
            metrics.hub_subscriptions.inc()
        if entry.joined.is_set():
            return
        self.memberships.reconcile(key)
        try:
            async with asyncio.timeout(JOIN_TIMEOUT_SECONDS):  # no task per subscriber
                await entry.joined.wait()
        except TimeoutError:
            raise HubUnavailable(f"the channel layer did not accept {key!r}") from None

    def remove(self, key: str, subscription: Subscription) -> None:
        """Stop delivering ``key``'s events to ``subscription``. Synchronous and immediate."""
        entry = self._keys.get(key)
        if entry is None or subscription not in entry.subscriptions:
            return
        entry.subscriptions.discard(subscription)
        metrics.hub_subscriptions.dec()
        if not entry.subscriptions:
            self.memberships.reconcile(key)
            if self._ending and not self.local_subscriber_count():
                self._drained.set()

    def local_subscriber_count(self, key: str | None = None) -> int:
        """How many subscriptions this process holds (for ``key``, or in all)."""
        if key is not None:
            entry = self._keys.get(key)
            return len(entry.subscriptions) if entry else 0
        return sum(len(entry.subscriptions) for entry in self._keys.values())

    def is_member(self, key: str) -> bool:
        """Whether the hub's channel is in ``key``'s channel-layer group."""
        return self.memberships.is_member(key)

    async def renew_memberships(self) -> None:
        """Join every group again, so channels-redis' ``group_expiry`` never removes us.

        Through the worker, in batches and in order with joins and leaves: a renewal
        cannot re-add a group that a leave just removed."""
        await apply_memberships(self.layer, self.channel, add=[HUB_GROUP, self.heartbeats.group])
        self.memberships.renew()
        await self.wait_until_settled()

    async def wait_until_settled(self) -> None:
        """Wait until every pending membership change has been applied (for tests)."""
        await self.memberships.wait_until_settled()

    def end_streams(self) -> int:
        """End every stream and socket now, and any that subscribes later (shutdown).

        Each subscription is ``end()``ed: streams return, sockets close with 1012, and
        their clients reconnect to a process that is not stopping. Returns how many.
        """
        self._ending = True
        ended = {sub for entry in self._keys.values() for sub in entry.subscriptions}
        for subscription in ended:
            subscription.end()
        if not ended:
            self._drained.set()
        return len(ended)

    async def wait_until_drained(self) -> None:
        """After ``end_streams()``, wait until every stream has left its subscriptions."""
        await self._drained.wait()

    async def close(self) -> None:
        """Stop the hub's tasks and leave its groups (for shutdown and tests)."""
        if self._closed:
            return
        self._closed = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.channel is not None:
            groups = [HUB_GROUP, self.heartbeats.group, *self.memberships.groups()]
            try:
                await apply_memberships(self.layer, self.channel, discard=set(groups))
            except Exception as error:
                _report("leaving groups on close", error)
        self.memberships.forget_all()

    # Lifecycle -------------------------------------------------------------------------

    async def _ensure_started(self) -> None:
        if self._closed:
            raise HubUnavailable("the hub is closed")
        if self._tasks:
            return
        async with self._start_lock:
            if self._tasks:
                return
            self.channel = await self.layer.new_channel()
            await apply_memberships(
                self.layer, self.channel, add=[HUB_GROUP, self.heartbeats.group]
            )
            self.heartbeats.seen = time.monotonic()
            self._tasks = [
                asyncio.create_task(self._receive_forever(), name="hub-receive"),
                asyncio.create_task(self.memberships.maintain_forever(), name="hub-membership"),
                asyncio.create_task(self._renew_forever(), name="hub-renew"),
                asyncio.create_task(self.heartbeats.run_forever(), name="hub-heartbeat"),
            ]

    async def _renew_forever(self) -> None:
        interval = settings.STREAM_GROUP_RENEW_SECONDS
        while True:
            await asyncio.sleep(interval)
            try:
                await self.renew_memberships()
            except Exception as error:
                _report("hub membership renewals", error)

    async def _receive_forever(self) -> None:
        """The hub's only receive: never cancelled except when the hub closes.

        On channels-redis it takes every message already waiting, up to a batch
        (``streamsite.streaming.layer.RedisChannelLayer.receive_batch``), and hands them
        out in one step: fewer round trips, and one write per stream for all of them.
        """
        backoff = 0.1
        receive_batch = getattr(self.layer, "receive_batch", None)
        while True:
            try:
                if receive_batch is not None:
                    messages = await receive_batch(self.channel)
                else:
                    messages = [await self.layer.receive(self.channel)]
            except asyncio.CancelledError:
                raise
            except Exception as error:
                _report("hub receives (re-joined and resynced)", error)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                await self._rejoin_after_failure()
                continue
            backoff = 0.1
            CHANNEL_LAYER.succeeded()
            for message in messages:
                try:
                    self._dispatch(message)
                except Exception:
                    logger.exception("hub could not dispatch a %r message", message.get("type"))

    async def _rejoin_after_failure(self) -> None:
        """Memberships may be gone (Redis restarted) and events lost: join again, resync."""
        self.heartbeats.forget_in_flight()  # one recovery per failure, not one per check
        try:
            await apply_memberships(
                self.layer, self.channel, add=[HUB_GROUP, self.heartbeats.group]
            )
        except Exception as error:
            _report("hub re-joins", error)
        self.memberships.lost_all()
        metrics.resyncs.labels("layer_error").inc()
        for key, entry in self._keys.items():
            entry.needs_resync = True
            self.memberships.reconcile(key)

    # Dispatch --------------------------------------------------------------------------

    def _dispatch(self, message: dict) -> None:
        kind = message.get("type")
        if kind == "hub.resync":
            metrics.resyncs.labels("publish_failed").inc()
            self._resync(message.get("keys"))
            return
        if kind == HEARTBEAT:
            # Dropped ones took whatever events were queued with them: every stream
            # re-reads the database.
            if self.heartbeats.arrived(message.get("n", 0)):
                metrics.heartbeat_gaps.inc()
                metrics.resyncs.labels("heartbeat_gap").inc()
                self._resync(None)
            return
        published_at = message.get(PUBLISHED_AT)
        if published_at is not None:
            # Publish (after commit) to this hub handing the event to its local streams.
            metrics.delivery_latency.labels(message_app(message)).observe(
                max(0.0, time.time() - published_at)
            )
        keys = self._keys
        for key, event in expand_message(message, wanted=keys.__contains__, shared=True):
            for subscription in keys[key].subscriptions:
                direct = subscription.direct
                if direct is None or not direct(event):
                    subscription.push(event)

    def _resync(self, keys: list[str] | None) -> None:
        """Tell the subscribers of ``keys`` (None: of every key) to re-read the database."""
        if keys is None:
            entries = list(self._keys.values())
        else:
            entries = [self._keys[key] for key in keys if key in self._keys]
        # A subscription may hold several keys (``into``): one RESYNC is enough.
        for subscription in {sub for entry in entries for sub in entry.subscriptions}:
            subscription.push(RESYNC)


def _report(what: str, error: Exception) -> None:
    """Log a failed layer call: counted if the layer is unreachable, else a traceback."""
    metrics.layer_send_failures.inc()
    report_failure(CHANNEL_LAYER, what, error, logger)


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub] = weakref.WeakKeyDictionary()


def get_hub() -> Hub:
    """Return the hub of the running event loop (one per server process)."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None or hub._closed:
        hub = _hubs[loop] = Hub()
    return hub


def all_hubs() -> list[tuple[asyncio.AbstractEventLoop, Hub]]:
    """Every loop's hub (for ``streamsite.shutdown``, which runs outside those loops)."""
    return list(_hubs.items())


def end_streams() -> int:
    """End the running loop's streams and sockets (``Hub.end_streams``); how many."""
    hub = _hubs.get(asyncio.get_running_loop())
    return hub.end_streams() if hub is not None else 0


async def close_hub() -> None:
    """Close the running loop's hub, if it has one."""
    hub = _hubs.pop(asyncio.get_running_loop(), None)
    if hub is not None:
        await hub.close()
