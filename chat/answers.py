"""What one chat socket has shown of the assistant's answers: their text, exactly once.

The assistant publishes each piece of an answer's text to the room once it is committed
(``assistant.delta``: text stored at ``[start, position)``, positions in code points) and
its end (``assistant.done``: the status and final length). The channel layer is lossy,
and a socket may have shown an answer from the database (history, resume) further than a
live event starts. So each socket's outbox keeps, per answer still being written, the
position it sent, and applies the rules of the assistant's own stream
(``assistant.streams.ViewState``):

- a delta that starts where the socket is goes out as the room's frame, built once per
  event (``chat.protocol.event_send``): the common case costs nothing per socket;
- a delta already covered is dropped; one that overlaps is trimmed (a frame of its own);
- a delta that starts beyond it (one was lost), or a done whose position is beyond it
  (text that never arrived), sends the socket to the database (``catch_up``): the missing
  text as one delta, then the done if the answer has ended;
- events for a message the socket has not framed are dropped: the message, framed later
  from the database (a resume), carries its text so far. Should its live ``message`` event
  come after them (two publishers racing), its state is read again (``early``).

A done whose position is below what the socket sent (a Stop cut the text back to what the
stopping client had shown) goes out as it is: clients cut their text to it.
"""

from __future__ import annotations

from assistant.selectors import answer_states
from chat import protocol
from chat.events import MISSING_ANSWER
from chat.recent_ids import RecentIds
from streamsite.streaming.db import db_call

#: Returned by ``AnswerStreams.delta`` and ``done``: only the writer task can answer this
#: event (it reads the database).
CATCH_UP = object()
#: Messages remembered as "events came before the message itself" (rare: a race).
EARLY_IDS = 16
STREAMING = "streaming"


class AnswerStreams:
    """The assistant's answers one socket is showing as they are written.

    Empty for almost every socket almost all the time: its containers are made on first use.
    """

    __slots__ = ("_early", "_streaming")

    def __init__(self) -> None:
        # message id -> [answer id, position sent]
        self._streaming: dict[int, list[int]] | None = None
        self._early: RecentIds | None = None

    def streaming(self) -> list[int]:
        """The messages whose answers this socket shows as still being written."""
        return list(self._streaming or ())

    def position(self, message_id: int) -> int | None:
        entry = (self._streaming or {}).get(message_id)
        return None if entry is None else entry[1]

    def shown(self, payload: dict, answer_id: int | None) -> None:
        """The socket is sending ``payload`` (``chat.events.message_payload``).

        A client keeps the longer text of a streaming answer it already shows (an older
        state is stale), and takes a finished answer's text and status as they are.
        """
        if not payload.get("assistant"):
            return
        message_id = payload["id"]
        if payload.get("deleted") or payload["status"] != STREAMING or answer_id is None:
            self.forget(message_id)
            return
        if self._streaming is None:
            self._streaming = {}
        entry = self._streaming.get(message_id)
        if entry is None:
            self._streaming[message_id] = [answer_id, payload["position"]]
        elif payload["position"] > entry[1]:
            entry[1] = payload["position"]

    def forget(self, message_id: int) -> None:
        if self._streaming:
            self._streaming.pop(message_id, None)

    def was_early(self, message_id: int) -> bool:
        """Whether the answer's events came before this message's own live event."""
        return self._early is not None and message_id in self._early

    def _not_framed(self, message_id: int, framed) -> None:
        if message_id not in framed:
            if self._early is None:
                self._early = RecentIds(EARLY_IDS)
            self._early.add(message_id)

    def delta(self, event: dict, framed):
        """What to send for an ``assistant.delta``: an ASGI message, None, or ``CATCH_UP``.

        ``framed`` holds the message ids the socket sent (``RecentIds``).
        """
        message_id = event["message"]
        entry = self._streaming.get(message_id) if self._streaming else None
        if entry is None:
            self._not_framed(message_id, framed)
            return None
        sent, start, end = entry[1], event["start"], event["position"]
        if start > sent:
            return CATCH_UP
        if end <= sent:
            return None
        entry[1] = end
        if start == sent:
            return protocol.event_send(event)
        text = event["text"][sent - start :]
        return protocol.websocket_send(protocol.delta_frame(message_id, end, text))

    def done(self, event: dict, framed):
        """What to send for an ``assistant.done``: an ASGI message, None, or ``CATCH_UP``."""
        message_id = event["message"]
        entry = self._streaming.get(message_id) if self._streaming else None
        if entry is None:
            self._not_framed(message_id, framed)
            return None
        if event["position"] > entry[1]:
            return CATCH_UP
        del self._streaming[message_id]
        return protocol.event_send(event)

    async def catch_up(self, message_ids) -> list[str]:
        """Read these answers from the database; the frames that bring the socket up to them."""
        entries = {
            message_id: self._streaming[message_id]
            for message_id in message_ids
            if self._streaming and message_id in self._streaming
        }
        if not entries:
            return []
        states = await db_call(answer_states, [entry[0] for entry in entries.values()])
        frames = []
        for message_id, entry in entries.items():
            state = states.get(entry[0]) or MISSING_ANSWER
            if state["position"] > entry[1]:
                text = state["text"][entry[1] :]
                frames.append(protocol.delta_frame(message_id, state["position"], text))
                entry[1] = state["position"]
            if state["status"] != STREAMING:
                frames.append(
                    protocol.done_frame(
                        message_id, state["status"], state["position"], state["error"]
                    )
                )
                self.forget(message_id)
        return frames

    async def fresh(self, payload: dict, answer_id: int | None) -> dict:
        """``payload`` of a new answer's message, with the answer's state read now."""
        states = await db_call(answer_states, [answer_id]) if answer_id is not None else {}
        state = states.get(answer_id) or MISSING_ANSWER
        return {
            **payload,
            "body": state["text"],
            "status": state["status"],
            "position": state["position"],
            "error": state["error"] or None,
        }
