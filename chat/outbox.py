"""Everything one chat socket is sent about its room, in order, by one task.

A socket's frames come from three places: live events from the process' hub (messages,
deletions, presence, typing, removals), replies the client asked for (``history``,
``resume``), and recovery (``RESYNC`` from the hub when events may have been lost). If each
wrote to the socket on its own, a live message could overtake the replay it follows, or be
sent twice. So one ``RoomOutbox`` task per socket owns the order:

- Requests the consumer accepts (``request_history``, ``request_resume``) go into the same
  buffer as the hub's events, and the task handles everything one item at a time. The
  consumer itself never waits for a read: a long ``resume`` does not delay a ``pong``.
- A replay reads the database in pages (``chat.selectors.messages_after``, each page on the
  shared pool with its connection released) and sends each message as a ``message`` frame.
  Live events arriving meanwhile are set aside, then handled after it: whatever the replay
  already sent is skipped by id, the rest (a row committed after the last page) goes out.
  That is the subscribe-then-replay hand-over of the SSE stream, with no gap and no
  duplicate.
- Message ids sent on this socket are remembered (the latest ``REMEMBERED_IDS``), so a
  message is never framed twice, whichever way it came.
- The buffer is bounded: a client that reads too slowly is closed with 1013 and resumes
  from the database when it reconnects, rather than growing the server's memory.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass

from chat import protocol, selectors
from chat.events import message_payload
from streamsite.streaming.hub import RESYNC, Subscription

logger = logging.getLogger(__name__)

#: Ids remembered per socket to drop a message that arrives twice (replay and live).
REMEMBERED_IDS = 2048
#: Rows per database page when replaying; between pages the socket's live events are
#: set aside, so the buffer cannot overflow during a long replay.
RESUME_PAGE_SIZE = 500
#: ``history``/``resume`` requests a socket may have waiting; more are refused.
MAX_PENDING_READS = 8


@dataclass(frozen=True, slots=True)
class HistoryRequest:
    before: int
    limit: int


@dataclass(frozen=True, slots=True)
class ResumeRequest:
    after: int


class RecentIds:
    """A bounded set of the ids most recently added."""

    __slots__ = ("_ids", "_order", "capacity")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._ids: set[int] = set()
        self._order: deque[int] = deque()

    def __contains__(self, item: int) -> bool:
        return item in self._ids

    def add(self, item: int) -> None:
        if item in self._ids:
            return
        self._ids.add(item)
        self._order.append(item)
        if len(self._order) > self.capacity:
            self._ids.discard(self._order.popleft())


class RoomOutbox:
    """The single writer of one socket's frames about its room (see the module docstring).

    ``send`` takes an ASGI ``websocket.send`` message; ``close`` closes the socket with a
    code. The owner (the consumer) runs ``run()`` as a task and cancels it when the socket
    goes. Nothing is sent once the socket is closed.
    """

    def __init__(
        self,
        *,
        room,
        user,
        session: str | None,
        events: Subscription,
        send: Callable[[dict], Awaitable[None]],
        close: Callable[[int], Awaitable[None]],
    ) -> None:
        self.room = room
        self.user_id = user.pk
        # A staff member or a public room's reader keeps reading when their membership goes.
        self.removal_closes = room.is_private and not user.is_staff
        self.session = session
        self.events = events
        self._send = send
        self._close = close
        self.sent = RecentIds(REMEMBERED_IDS)
        self.last_id = 0
        self.online: list[str] | None = None
        self.presence_version = -1
        self.pending_reads = 0
        self.closed = False
        self._pending: deque = deque()

    # What the consumer calls ---------------------------------------------------------------

    async def start(self, presence, messages: list, has_more: bool) -> None:
        """Send the first frames: presence, then the latest messages as one history frame.

        ``presence`` is what joining returned (``chat.presence.RoomPresence``): the online
        list and its version, so older presence events still on their way are ignored.
        """
        await self.send_presence(presence.online, presence.version)
        payloads = []
        for message in messages:
            self._mark_sent(message.pk)
            payloads.append(message_payload(message))
        await self._send_text(protocol.history_frame(payloads, has_more))

    def request_history(self, before: int, limit: int) -> bool:
        """Queue a history read; False if too many reads are already waiting."""
        return self._request(HistoryRequest(before, limit))

    def request_resume(self, after: int) -> bool:
        """Queue a resume; False if too many reads are already waiting."""
        return self._request(ResumeRequest(after))

    def _request(self, request) -> bool:
        if self.pending_reads >= MAX_PENDING_READS:
            return False
        self.pending_reads += 1
        # Into the hub's buffer: requests and events are handled in one order, by one task.
        self.events.push(request)
        return True

    async def send_presence(self, online: list[str], version: int, event: dict | None = None):
        """Send the online list if it is newer than the last one sent, and different.

        ``event``: the hub's presence event, whose frame every socket of the room shares.
        """
        if version <= self.presence_version:
            return
        self.presence_version = version
        if online is self.online or online == self.online:
            return
        self.online = online
        if event is not None:
            await self._send_event(event)
        else:
            await self._send_text(protocol.presence_frame(online))

    # The task --------------------------------------------------------------------------

    async def run(self) -> None:
        """Handle events and requests until the socket closes (or this task is cancelled)."""
        pending = self._pending
        events = self.events
        while not self.closed:
            if not pending:
                await events.wait(None)
                if events.overflowed:
                    await self.close(protocol.CLOSE_TRY_AGAIN_LATER)
                    return
                pending.extend(events.take())
                continue
            item = pending.popleft()
            if type(item) is dict:
                await self._live(item)
            elif item is RESYNC:
                # Events may have been lost (Redis restarted): the database has them.
                await self._replay(self.last_id)
            elif type(item) is ResumeRequest:
                self.pending_reads -= 1
                await self._replay(item.after)
            elif type(item) is HistoryRequest:
                self.pending_reads -= 1
                await self._history(item)

    async def close(self, code: int) -> None:
        if not self.closed:
            self.closed = True
            await self._close(code)

    async def _send_text(self, text: str) -> None:
        if not self.closed:
            await self._send(protocol.websocket_send(text))

    async def _send_event(self, event: dict) -> None:
        if not self.closed:
            await self._send(protocol.event_send(event))

    # Handling ------------------------------------------------------------------------------

    async def _live(self, event: dict) -> None:
        kind = event.get("kind")
        if kind == "message":
            message_id = event["message"]["id"]
            if message_id in self.sent:
                return
            self._mark_sent(message_id)
            await self._send_event(event)
        elif kind == "typing":
            if event["user_id"] != self.user_id:
                await self._send_event(event)
        elif kind == "message.deleted":
            await self._send_event(event)
        elif kind == "presence":
            # The list object and its frame are shared by the room's sockets in this process.
            await self.send_presence(event["online"], event["version"], event)
        elif kind == "member.removed":
            if event["user_id"] == self.user_id and self.removal_closes:
                await self.close(protocol.CLOSE_FORBIDDEN)
        elif kind == "room.deleted":
            await self.close(protocol.CLOSE_NOT_FOUND)
        elif kind == "session.ended" and self.session and event.get("session") == self.session:
            await self.close(protocol.CLOSE_NOT_LOGGED_IN)
        # Anything else (the user's notification events share the buffer) is not ours.

    async def _history(self, request: HistoryRequest) -> None:
        messages, has_more = await selectors.aroom_history(
            self.room, before=request.before, limit=request.limit
        )
        await self._send_text(
            protocol.history_frame([message_payload(message) for message in messages], has_more)
        )

    async def _replay(self, after: int) -> None:
        """Send every message after ``after`` from the database, then let live ones follow."""
        events, pending = self.events, self._pending
        rows = 0
        messages = selectors.messages_after(self.room.pk, after, page_size=RESUME_PAGE_SIZE)
        async with aclosing(messages):
            async for message in messages:
                if message.pk not in self.sent:
                    self._mark_sent(message.pk)
                    await self._send_text(protocol.message_frame(message_payload(message)))
                rows += 1
                if rows % RESUME_PAGE_SIZE == 0:
                    # Set live events aside (handled after the replay) so the hub's buffer
                    # keeps room; what is set aside is bounded like the buffer.
                    pending.extend(events.take())
                    if events.overflowed or len(pending) > events.maxsize:
                        await self.close(protocol.CLOSE_TRY_AGAIN_LATER)
                        return

    def _mark_sent(self, message_id: int) -> None:
        self.sent.add(message_id)
        if message_id > self.last_id:
            self.last_id = message_id
