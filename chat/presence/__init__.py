"""Who is online in each chat room, across every server process.

Presence travels as changes: a socket gets the room's first page of names (``PAGE_SIZE``,
sorted) and the count when it connects, more pages when it asks, and then only deltas:
the names that came online or went offline, the count, and a version, coalesced per room
and process. Nothing about a change costs O(room): the store answers each change with the
change (``store``), the tracker sends many changes in one round trip (``tracker``), and
events are published coalesced and received in order (``events``).
"""

from __future__ import annotations

import asyncio
import weakref

from chat.presence.events import (
    PUBLISH_INTERVAL_SECONDS,
    Accepted,
    delta_event,
    delta_send,
    resync_event,
)
from chat.presence.store import (
    PAGE_SIZE,
    presence_key,
    presence_online_key,
    presence_state_key,
)
from chat.presence.tracker import PresencePage, PresenceTracker

__all__ = [
    "PAGE_SIZE",
    "PUBLISH_INTERVAL_SECONDS",
    "Accepted",
    "PresencePage",
    "PresenceTracker",
    "accept_delta",
    "close_presence",
    "delta_event",
    "delta_send",
    "get_presence",
    "presence_join",
    "presence_key",
    "presence_leave",
    "presence_online",
    "presence_online_key",
    "presence_state_key",
    "resync_event",
]

_trackers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, PresenceTracker] = (
    weakref.WeakKeyDictionary()
)


def get_presence() -> PresenceTracker:
    """Return the presence tracker of the running event loop (one per server process)."""
    loop = asyncio.get_running_loop()
    tracker = _trackers.get(loop)
    if tracker is None or tracker.closed:
        tracker = _trackers[loop] = PresenceTracker()
    return tracker


async def close_presence() -> None:
    """Close the running loop's tracker, removing its entries (for shutdown and tests)."""
    tracker = _trackers.pop(asyncio.get_running_loop(), None)
    if tracker is not None:
        await tracker.close()


def accept_delta(event: dict) -> Accepted | None:
    """A ``presence.delta`` hub event as this process passes it on (computed once)."""
    accepted = event.get("_accepted", False)
    if accepted is False:
        accepted = get_presence().views.accept(event)
    return accepted


async def presence_join(room_id: int, user_id: int, username: str) -> PresencePage:
    """One more socket of the user in the room; return the room's first page of names."""
    return await get_presence().join(room_id, user_id, username)


async def presence_leave(room_id: int, user_id: int) -> None:
    """One socket fewer of the user in the room: once per ``presence_join`` call, even one
    that was cancelled or failed."""
    await get_presence().leave(room_id, user_id)


async def presence_online(room_id: int) -> list[str]:
    """Every online name of the room, sorted (page by page: for tests and tools)."""
    return await get_presence().online(room_id)
