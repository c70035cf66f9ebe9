"""Everything one chat socket is sent about its room, in order, by one task.

A socket's frames come from three places: live events from the process' hub (messages,
deletions, presence, typing, removals), replies the client asked for (``history``,
``resume``, ``presence.more``), and recovery (``RESYNC`` from the hub when events may have
been lost). If each wrote to the socket on its own, a live message could overtake the
replay it follows, or be sent twice. So one ``RoomOutbox`` task per socket owns the order:

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
- The assistant's answers: each socket knows how far it has sent every answer still being
  written (``chat.answers.AnswerStreams``), so a delta is sent once, trimmed, or sends the
  socket to the database when one was lost.
- Presence: the snapshot sent on connect (or resync) has a version; a delta's changes that
  are not newer than it are left out (the snapshot holds them), so what a socket applies
  never goes back. The frame of a delta is shared by the room's sockets, except for a
  socket that connected while the delta was being coalesced.
- The buffer is bounded: a client that reads too slowly is closed with 1013 and resumes
  from the database when it reconnects, rather than growing the server's memory.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass

from chat import protocol, selectors
from chat.answers import CATCH_UP, AnswerStreams
from chat.events import message_payload
from chat.presence import accept_delta, delta_send, get_presence
from chat.recent_ids import RecentIds
from chat.reorder import ReorderWait
from chat.socket_writes import SocketWrites
from streamsite.observability import metrics
from streamsite.streaming.hub import RESYNC, Subscription

logger = logging.getLogger(__name__)

#: Ids remembered per socket to drop a message that arrives twice (replay and live). A
#: replay overlaps what the socket sent live only just after it connects, so a few hundred
#: are plenty.
REMEMBERED_IDS = 256
#: Rows per database page when replaying; between pages the socket's live events are
#: set aside, so the buffer cannot overflow during a long replay.
RESUME_PAGE_SIZE = 500
#: ``history``/``resume`` requests a socket may have waiting; more are refused.
MAX_PENDING_READS = 8
#: ``RoomOutbox._prepare``: only the writer task can handle this event (it closes the
#: socket, or reads the store).
NEEDS_TASK = object()


@dataclass(frozen=True, slots=True)
class HistoryRequest:
    before: int
    limit: int


@dataclass(frozen=True, slots=True)
class ResumeRequest:
    after: int


@dataclass(frozen=True, slots=True)
class PresenceRequest:
    after: str


class RoomOutbox:
    """The single writer of one socket's frames about its room (see the module docstring).

    ``send`` takes an ASGI ``websocket.send`` message; ``close`` closes the socket with a
    code. The owner (the consumer) runs ``run()`` as a task and cancels it when the socket
    goes. Nothing is sent once the socket is closed.
    """

    __slots__ = (
        "_idle",
        "_pending",
        "_reorder",
        "_writes",
        "answers",
        "events",
        "last_id",
        "pending_reads",
        "presence_version",
        "removal_closes",
        "room",
        "sent",
        "session",
        "user_id",
    )  # one per socket: no __dict__

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
        self._writes = SocketWrites(send, close)
        self.sent = RecentIds(REMEMBERED_IDS)
        self.last_id = 0
        self.answers = AnswerStreams()
        #: The version of the presence snapshot sent last: older changes are in it.
        self.presence_version = -1
        self.pending_reads = 0
        self._pending: deque = deque()
        # The writer task is waiting with nothing to do: the hub may deliver directly.
        self._idle = False
        # Messages that came before an earlier message's wait for it here.
        self._reorder = ReorderWait(self)
        events.direct = self.deliver_now

    # What the consumer calls ---------------------------------------------------------------

    async def start(self, presence, page: selectors.JoiningPage) -> None:
        """Send the first frames: presence, then the latest messages as one history frame.

        ``presence`` is what joining returned (``chat.presence.PresencePage``): the first
        names, the count and their version, so older presence changes are left out.
        ``page`` may be shared with other sockets: its frame is built once, by the first
        (the payloads are the same for every socket; what each socket notes is its own).
        """
        await self.send_presence(presence)
        if page.frame is None:
            page.payloads = [message_payload(message) for message in page.messages]
            page.frame = protocol.history_frame(page.payloads, page.has_more)
        for message, payload in zip(page.messages, page.payloads, strict=True):
            self._mark_sent(message.pk)
            if message.assistant_answer_id is not None:
                self.answers.shown(payload, message.assistant_answer_id)
        await self._send_text(page.frame)

    def request_history(self, before: int, limit: int) -> bool:
        """Queue a history read; False if too many reads are already waiting."""
        return self._request(HistoryRequest(before, limit))

    def request_resume(self, after: int) -> bool:
        """Queue a resume; False if too many reads are already waiting."""
        return self._request(ResumeRequest(after))

    def request_presence(self, after: str) -> bool:
        """Queue a read of the online names after ``after``; False if too many reads wait."""
        return self._request(PresenceRequest(after))

    def _request(self, request) -> bool:
        if self.pending_reads >= MAX_PENDING_READS:
            return False
        self.pending_reads += 1
        # Into the hub's buffer: requests and events are handled in one order, by one task.
        self.events.push(request)
        return True

    async def send_presence(self, page) -> None:
        """Send a snapshot (a ``PresencePage`` from the start) unless one as new was sent."""
        if page.version > self.presence_version:
            self.presence_version = page.version
            frame = protocol.presence_frame(page.online, page.count, page.more, page.version)
            await self._send_text(frame)

    # The task --------------------------------------------------------------------------

    async def run(self) -> None:
        """Handle events and requests until the socket closes (or this task is cancelled)."""
        pending = self._pending
        events = self.events
        reorder = self._reorder
        loop = asyncio.get_running_loop()
        while not self.closed:
            if reorder.held is not None and loop.time() >= reorder.until:
                await reorder.timed_out()
                continue
            if not pending:
                self._idle = True
                try:
                    if reorder.held is None:
                        await events.wait(None)
                    elif not await events.wait(reorder.until - loop.time()):
                        continue  # the earlier message did not come: read the room (above)
                finally:
                    self._idle = False
                if events.overflowed:
                    await self.close(_close_code(events))
                    return
                pending.extend(events.take())
                continue
            item = pending.popleft()
            if type(item) is dict:
                await self._live(item)
            elif item is RESYNC:
                # Events may have been lost (Redis restarted): the database has the
                # messages, the presence store who is online.
                await self.send_presence(await get_presence().page(self.room.pk))
                await self._replay(self.last_id)
                await self._catch_up(self.answers.streaming())
            elif type(item) is ResumeRequest:
                self.pending_reads -= 1
                await self._replay(item.after)
            elif type(item) is HistoryRequest:
                self.pending_reads -= 1
                await self._history(item)
            elif type(item) is PresenceRequest:
                self.pending_reads -= 1
                page = await get_presence().page(self.room.pk, item.after)
                await self._send_text(protocol.presence_page_frame(item.after, page))
            if reorder.held is not None:
                await reorder.release()

    @property
    def closed(self) -> bool:
        """Whether the socket is closed or gone: nothing more is sent to it."""
        return self._writes.closed

    async def close(self, code: int) -> None:
        await self._writes.close(code)

    async def _send_text(self, text: str) -> None:
        await self._writes.send(protocol.websocket_send(text))

    # Handling ------------------------------------------------------------------------------

    def _prepare(self, event: dict):
        """What a live event means for this socket: an ASGI message to send, None for
        nothing, or ``NEEDS_TASK`` when it closes the socket or reads the store (which only
        the task does)."""
        kind = event.get("kind")
        if kind == "message":
            payload = event["message"]
            message_id = payload["id"]
            if message_id in self.sent:
                return None
            previous = event.get("previous")
            if previous is not None and previous > self.last_id:
                # It overtook an earlier message (published by another process): the
                # database has both, in order (``chat.services._latest_message_id``).
                return NEEDS_TASK
            if payload.get("assistant"):
                if self.answers.was_early(message_id):
                    return NEEDS_TASK  # its text came first: read the answer's state
                self.answers.shown(payload, event.get("answer"))
            self._mark_sent(message_id)
            return protocol.event_send(event)
        if kind == "assistant.delta":
            message = self.answers.delta(event, self.sent)
            return NEEDS_TASK if message is CATCH_UP else message
        if kind == "assistant.done":
            message = self.answers.done(event, self.sent)
            return NEEDS_TASK if message is CATCH_UP else message
        if kind == "typing":
            return protocol.event_send(event) if event["user_id"] != self.user_id else None
        if kind == "message.deleted":
            self.answers.forget(event["id"])
            return protocol.event_send(event)
        if kind == "presence.delta":
            return delta_send(accept_delta(event), self.presence_version)
        if kind == "presence.resync":  # the store lost the room: read it again
            return NEEDS_TASK if event["version"] > self.presence_version else None
        if kind == "member.removed":
            removed = event["user_id"] == self.user_id and self.removal_closes
            return NEEDS_TASK if removed else None
        if kind == "room.deleted":
            return NEEDS_TASK
        if kind == "session.ended" and self.session and event.get("session") == self.session:
            return NEEDS_TASK
        return None  # the user's notification events share the buffer: not ours

    async def _live(self, event: dict) -> None:
        message = self._prepare(event)
        if message is NEEDS_TASK:
            kind = event["kind"]
            if kind in ("assistant.delta", "assistant.done"):
                await self._catch_up([event["message"]])
            elif kind == "message" and event.get("previous", 0) > self.last_id:
                self._reorder.hold(event)  # until the earlier message's event, or a read
            elif kind == "message":
                payload = await self.answers.fresh(event["message"], event.get("answer"))
                self.answers.shown(payload, event.get("answer"))
                self._mark_sent(payload["id"])
                await self._send_text(protocol.message_frame(payload))
            elif kind == "presence.resync":
                await self.send_presence(await get_presence().page(self.room.pk))
            elif kind == "member.removed":
                await self.close(protocol.CLOSE_FORBIDDEN)
            elif kind == "room.deleted":
                await self.close(protocol.CLOSE_NOT_FOUND)
            else:
                await self.close(protocol.CLOSE_NOT_LOGGED_IN)
        elif message is not None:
            await self._writes.send(message)
            metrics.delivered.add("chat", event["kind"])

    def deliver_now(self, event) -> bool:
        """The hub's fast path: handle ``event`` at once if the writer has nothing queued.

        Waking a task per socket for every event costs more than the write itself. When
        this socket's writer is idle, its buffer empty and no send in flight, the frame is
        written here, synchronously (``chat.socket_writes``). Returns False to have the
        event queued for the writer instead (it keeps the order in every other case).
        """
        if type(event) is not dict:
            return False
        writes = self._writes
        if (
            not self._idle
            or writes.inflight is not None
            or self.events._buffer
            or writes.closed
            or self._reorder.held is not None  # the writer sends what follows a held one
        ):
            if event.get("kind") == "presence.delta":
                # Accepted now, in the order the hub received it, even if handled later.
                accept_delta(event)
            return False
        message = self._prepare(event)
        if message is NEEDS_TASK:
            return False
        if message is None:
            return True
        metrics.delivered.add("chat", event["kind"])
        writes.write_now(event, message)
        return True

    async def _history(self, request: HistoryRequest) -> None:
        messages, has_more = await selectors.aroom_history(
            self.room, before=request.before, limit=request.limit
        )
        await self._send_text(
            protocol.history_frame([self._payload(message) for message in messages], has_more)
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
                    await self._send_text(protocol.message_frame(self._payload(message)))
                rows += 1
                if rows % RESUME_PAGE_SIZE == 0:
                    # Set live events aside (handled after the replay) so the hub's buffer
                    # keeps room; what is set aside is bounded like the buffer.
                    pending.extend(events.take())
                    if events.overflowed or len(pending) > events.maxsize:
                        await self.close(_close_code(events))
                        return

    def _payload(self, message) -> dict:
        """The payload of a message read from the database, noting an answer's position."""
        payload = message_payload(message)
        if message.assistant_answer_id is not None:
            self.answers.shown(payload, message.assistant_answer_id)
        return payload

    async def _catch_up(self, message_ids) -> None:
        for frame in await self.answers.catch_up(message_ids):
            await self._send_text(frame)

    def _mark_sent(self, message_id: int) -> None:
        self.sent.add(message_id)
        if message_id > self.last_id:
            self.last_id = message_id


def _close_code(events: Subscription) -> int:
    """1012 when the server is shutting down (``Subscription.end``), else 1013."""
    if events.restarting:
        return protocol.CLOSE_SERVICE_RESTART
    SLOW_CLOSED.inc()
    return protocol.CLOSE_TRY_AGAIN_LATER


SLOW_CLOSED = metrics.slow_clients_closed.labels("chat", "socket_1013")
