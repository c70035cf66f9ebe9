"""The hub's group memberships, brought in line with its local subscribers by one worker.

The hub (``streamsite.streaming.hub``) is in a key's channel-layer group while the key has
local subscribers. ``Hub.add`` and ``Hub.remove`` only ask for a key to be looked at
(``reconcile``); one worker applies what each key's state wants when its batch goes, many
keys per round trip (``streamsite.streaming.groups``):

- a leave and a re-join of the same key cannot overtake each other, and 10,000 users
  arriving at once cost a few round trips, not 10,000 queued one behind the other;
- a key's subscribers are released (``KeyState.joined``) only once its membership is in
  place, so a caller that subscribes and then replays from the database misses nothing;
- renewals (channels-redis forgets members after ``group_expiry``) and re-joins after the
  layer lost every membership go through the same worker, in order with joins and leaves.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import TYPE_CHECKING

from streamsite.observability import metrics
from streamsite.streaming.groups import apply_memberships
from streamsite.streaming.outage import CHANNEL_LAYER, report_failure
from streamsite.streaming.subscription import RESYNC, Subscription

if TYPE_CHECKING:
    from streamsite.streaming.hub import Hub

# One logger for the hub and its parts, as before they were split.
logger = logging.getLogger("streamsite.streaming.hub")

#: Most keys the membership worker changes in one batch (one round trip per Redis shard).
BATCH_KEYS = 1000


class KeyState:
    """A key's local subscribers and whether the hub's group membership is in place."""

    __slots__ = ("joined", "needs_resync", "subscriptions")

    def __init__(self) -> None:
        self.subscriptions: set[Subscription] = set()
        self.joined = asyncio.Event()
        self.needs_resync = False


class Memberships:
    """The groups one hub's channel is in, and the worker that changes them.

    ``keys`` is the hub's own map of keys to their ``KeyState`` (shared, not copied): the
    worker releases a key's subscribers once it is joined and forgets a key it has left.
    """

    def __init__(self, hub: Hub, keys: dict[str, KeyState]) -> None:
        self.hub = hub
        self._keys = keys
        self._member_of: set[str] = set()
        # The worker's queue (a dict as an ordered set); keys it applies again whatever
        # _member_of says (a failed batch may have landed in part; a renewal); a generation
        # bumped when the layer may have lost every membership (a batch across it proves none).
        self._pending: dict[str, None] = {}
        self._reapply: set[str] = set()
        self._generation = 0
        self._wakeup = asyncio.Event()
        self._settled = asyncio.Event()
        self._settled.set()
        self._gauged = 0  # this hub's share of ``streamsite_hub_group_memberships``

    def is_member(self, key: str) -> bool:
        """Whether the hub's channel is in ``key``'s channel-layer group."""
        return key in self._member_of

    def reconcile(self, key: str) -> None:
        """Have the worker bring ``key``'s membership in line with its subscribers."""
        self._pending[key] = None
        self._settled.clear()
        self._wakeup.set()

    def renew(self) -> None:
        """Have the worker join every group it is in again (``group_expiry``)."""
        for key in self._member_of:
            self._reapply.add(key)
            self.reconcile(key)

    def lost_all(self) -> None:
        """The layer may have lost every membership (Redis restarted): none counts as held,
        and a batch in flight across this proves none of its joins."""
        self._generation += 1
        self.forget_all()

    def forget_all(self) -> None:
        """Count the channel as in no group (the layer lost them, or the hub left them)."""
        self._member_of.clear()
        self._count()

    def groups(self) -> list[str]:
        """Every group the channel may be in: joined, or maybe (a failed or renewed batch)."""
        return [*self._member_of, *self._reapply]

    async def wait_until_settled(self) -> None:
        """Wait until every pending membership change has been applied."""
        await self._settled.wait()

    async def maintain_forever(self) -> None:
        """Bring group memberships in line with local subscribers, many keys at a time.

        Whatever arrived while the previous batch was in flight makes the next batch, so
        the busier the process, the more keys each round trip carries.
        """
        while True:
            if not self._pending:
                self._settled.set()
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            batch = list(itertools.islice(self._pending, BATCH_KEYS))
            for key in batch:
                del self._pending[key]
            try:
                await self._apply(batch)
            except Exception as error:
                metrics.layer_send_failures.inc()
                report_failure(CHANNEL_LAYER, "hub membership changes (retried)", error, logger)
                await asyncio.sleep(1)
                for key in batch:
                    self.reconcile(key)

    async def _apply(self, batch: list[str]) -> None:
        """Apply what each key's current state wants, in one batch; then release its waiters."""
        add, discard = [], []
        for key in batch:
            entry = self._keys.get(key)
            member = key in self._member_of and key not in self._reapply
            if entry is not None and entry.subscriptions:
                if not member:
                    add.append(key)
            elif member or key in self._reapply:
                if entry is not None:
                    entry.joined.clear()  # a subscriber arriving now waits for the re-join
                discard.append(key)
        if add or discard:
            generation = self._generation
            try:
                await apply_memberships(self.hub.layer, self.hub.channel, add=add, discard=discard)
            except Exception:
                self._reapply.update(add, discard)  # either may have landed, in part
                raise
            self._member_of.difference_update(discard)
            self._reapply.difference_update(discard)
            if generation == self._generation:  # else the layer lost them: joined again
                self._member_of.update(add)
                self._reapply.difference_update(add)
        self._count()
        for key in batch:
            self._settle(key)

    def _count(self) -> None:
        members = len(self._member_of)
        metrics.hub_group_memberships.inc(members - self._gauged)
        self._gauged = members

    def _settle(self, key: str) -> None:
        """Release ``key``'s subscribers if its membership is in place; forget a left key."""
        entry = self._keys.get(key)
        if entry is None:
            return
        if entry.subscriptions:
            if key not in self._member_of:
                self.reconcile(key)  # someone subscribed while we were leaving
                return
            entry.joined.set()
            if entry.needs_resync:
                entry.needs_resync = False
                for subscription in entry.subscriptions:
                    subscription.push(RESYNC)
        elif key not in self._member_of:
            del self._keys[key]
