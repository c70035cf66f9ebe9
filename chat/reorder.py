"""The reorder wait: a message that overtook an earlier one waits a moment for it.

A chat message's event names the room's message before it (``previous``). A socket that
has not sent that one must not send the later one alone: a reconnect would resume after
it and never get the earlier one. Senders publish right after their commits, each in its
own thread, so two messages of a busy room often arrive a moment out of order; a read of
the room per socket for each such pair made a room of 1,000 at 50 messages a second read
the database 1,000 times over and fall behind for good (docs/benchmarks.md). So the socket
holds the later message until the earlier one's event comes, and reads the room only if
it does not come in time (lost, or very late).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chat.outbox import RoomOutbox

#: How long a message that overtook an earlier one waits for that one's own event before
#: the socket reads the room instead.
REORDER_WAIT_SECONDS = 0.5
#: Messages held at most while waiting; more read the room at once.
REORDER_HELD_MAX = 100


class ReorderWait:
    """The messages one socket holds, and until when (see the module docstring).

    A part of the socket's ``RoomOutbox``, used by its writer task only: what is released
    goes through the outbox's handling of live events, in order with everything else.
    """

    __slots__ = ("held", "outbox", "until")

    def __init__(self, outbox: RoomOutbox) -> None:
        self.outbox = outbox
        #: Message events that came before an earlier message's; None while none wait.
        self.held: list[dict] | None = None
        #: The loop's time when the socket stops waiting and reads the room.
        self.until = 0.0

    def hold(self, event: dict) -> None:
        """Keep a message that overtook an earlier one until that one's event comes."""
        if self.held is None:
            self.held = [event]
            self.until = asyncio.get_running_loop().time() + REORDER_WAIT_SECONDS
        else:
            self.held.append(event)
            if len(self.held) > REORDER_HELD_MAX:
                self.until = 0.0  # read the room now

    async def release(self) -> None:
        """Send the held messages whose earlier message has been sent, in id order; keep
        the rest (and everything after the first that must still wait)."""
        outbox = self.outbox
        held = sorted(self.held, key=lambda event: event["message"]["id"])
        self.held = None
        for index, event in enumerate(held):
            if event["message"]["id"] in outbox.sent:
                continue
            if event.get("previous", 0) > outbox.last_id:
                waiting = held[index:]
                if self.held is None:
                    self.held = waiting
                else:  # sending released ones held others: keep both, in order
                    self.held.extend(waiting)
                return
            await outbox._live(event)

    async def timed_out(self) -> None:
        """The earlier message's event did not come (lost, or very late): the database
        has it, and every held one (they were published after their commits)."""
        self.held = None
        await self.outbox._replay(self.outbox.last_id)
