"""A hub's numbered heartbeats: proof that its memberships live and that nothing was dropped.

Every few seconds the hub sends a heartbeat through a group only it is in (``group``).
Two things can go wrong on the way, and each is noticed here:

- a Redis restart empties the layer's groups while redis-py quietly reconnects: the
  heartbeats stop arriving. A late heartbeat proves nothing by itself, though: under load
  it waits in the channel behind thousands of events, and resyncing every stream then
  would make the load far worse. So a late one leads to a look at the membership itself
  (``still_member``); only a membership that is gone means re-join and resync;
- the layer drops messages (over capacity, expired): heartbeats are numbered, and one
  missing between two that arrived was dropped, with whatever events were queued with it.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import TYPE_CHECKING

from django.conf import settings

from streamsite.streaming.groups import has_member
from streamsite.streaming.outage import CHANNEL_LAYER, report_failure

if TYPE_CHECKING:
    from streamsite.streaming.hub import Hub

logger = logging.getLogger("streamsite.streaming.hub")

HEARTBEAT = "hub.heartbeat"


class Heartbeats:
    """One hub's heartbeats: sent, received, and what their gaps mean."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.group = f"streamsite.hub.{uuid.uuid4().hex}"
        self.seen = time.monotonic()
        self.sent = 0
        self.received = 0

    async def run_forever(self) -> None:
        """Send a heartbeat every interval; re-join if they stopped and the membership went."""
        interval = settings.STREAM_HUB_HEARTBEAT_SECONDS
        while True:
            await asyncio.sleep(interval)
            if time.monotonic() - self.seen > 3 * interval:
                self.seen = time.monotonic()  # one check per three intervals
                if not await self.still_member():
                    logger.warning("hub lost its group memberships; re-joining and resyncing")
                    await self.hub._rejoin_after_failure()
            self.sent += 1
            try:
                await self.hub.layer.group_send(self.group, {"type": HEARTBEAT, "n": self.sent})
            except Exception as error:
                report_failure(CHANNEL_LAYER, "hub heartbeats", error, logger)

    async def still_member(self) -> bool:
        """Whether the layer still has the hub's channel in ``group`` (False if unsure)."""
        try:
            return await has_member(self.hub.layer, self.group, self.hub.channel)
        except Exception as error:
            report_failure(CHANNEL_LAYER, "hub membership checks", error, logger)
            return False

    def arrived(self, number: int) -> bool:
        """Heartbeat ``number`` arrived; True if some before it were dropped."""
        self.seen = time.monotonic()
        dropped = number > self.received + 1
        if dropped:
            logger.warning("hub heartbeats %s were dropped; resyncing", number - 1)
        self.received = max(self.received, number)
        return dropped

    def forget_in_flight(self) -> None:
        """After a failure, whose recovery resyncs anyway: those in flight may be lost too,
        and the next check waits a full three intervals."""
        self.seen = time.monotonic()
        self.received = self.sent
