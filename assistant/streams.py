"""A conversation's event stream: what a viewer missed, from the database, then live.

Every event's id is a cursor, ``<answer>:<position>``: how far the client has that answer
(with several answers streaming at once, one such part each, the newest last). A client
resuming with ``Last-Event-ID: 12:340`` gets answer 12 from character 340 on, then every
later answer whole: exact, however the connection was cut, with no row per token.

The order is the guarantee, as in ``notifications.streams``: subscribe to the
conversation's key; replay from the database after the client's position; then forward
live events, each checked against what this stream has sent (``ViewState``): a delta
already covered is dropped, one that overlaps is trimmed, and one that leaves a gap (a
message the layer lost) sends the stream back to the database. Since every delta is
committed before it is published, the database always holds at least what any live event
announces.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import aclosing

from django.conf import settings

from assistant import events, selectors
from assistant.models import Answer
from assistant.runner import get_runner
from assistant.watchers import get_watchers
from streamsite.observability import metrics
from streamsite.streaming.hub import RESYNC, get_hub
from streamsite.streaming.sse import KEEPALIVE, encode_json_object, encode_retry

#: The end of an answer's POST stream, as OpenAI-style clients expect it.
DONE_SENTINEL = b"data: [DONE]\n\n"
#: Most answers a cursor names (answers streaming at once in one conversation, plus one).
MAX_CURSOR_PARTS = 16
_PART = r"\d{1,18}:\d{1,10}"
_CURSOR = re.compile(f"{_PART}(?:,{_PART}){{0,{MAX_CURSOR_PARTS - 1}}}", re.ASCII)

Cursor = list[tuple[int, int]]


def parse_cursor(raw: str | None) -> Cursor | None:
    """Parse ``<answer>:<position>[,<answer>:<position>...]``; None for nothing.

    Raises ``ValueError`` for anything else. Several parts say how far the client has
    each answer that was still streaming, the newest answer last.
    """
    if raw is None or raw == "":
        return None
    if _CURSOR.fullmatch(raw) is None:
        raise ValueError("The stream position must look like <answer>:<position>.")
    parts = [part.partition(":") for part in raw.split(",")]
    return [(int(answer), int(position)) for answer, _, position in parts]


def format_cursor(cursor: Cursor) -> str:
    return ",".join(f"{answer}:{position}" for answer, position in cursor)


class ViewState:
    """What one stream has sent: how far each unfinished answer, and the newest answer.

    Every event's id is the cursor after it (``cursor()``): the position of each answer
    still streaming, then the newest answer's. With two answers streaming at once, the id
    of the newer one's delta still says how far the older one got, so ``Last-Event-ID``
    resumes both exactly.
    """

    __slots__ = ("finished", "latest", "latest_position", "needs_catch_up", "only", "positions")

    def __init__(self, after: Cursor | None, only: int | None = None) -> None:
        self.only = only
        # Answers sent but not finished: id -> position sent.
        self.positions: dict[int, int] = dict(after or ())
        # The newest answer this stream has sent (or the client had), and how far.
        self.latest, self.latest_position = max(after) if after else (0, 0)
        self.needs_catch_up = False
        self.finished = False

    def cursor(self) -> str:
        parts = sorted(self.positions.items())
        if self.latest and self.latest not in self.positions:
            parts.append((self.latest, self.latest_position))
        return format_cursor(parts)

    def _event(self, name: str, payload: dict) -> bytes:
        data = encode_json_object(payload)
        return b"event: %s\nid: %s\ndata: %s\n\n" % (name.encode(), self.cursor().encode(), data)

    def _sent_up_to(self, answer_id: int, position: int) -> None:
        self.positions[answer_id] = position
        if answer_id >= self.latest:
            self.latest, self.latest_position = answer_id, position

    def replay_from(self) -> int:
        """The first answer to read from the database when catching up."""
        if self.only is not None:
            return self.only
        return min([*self.positions, self.latest + 1])

    def render_row(self, answer: Answer) -> bytes:
        """Bring the client up to ``answer`` as stored."""
        if self.only is not None and answer.pk != self.only:
            return b""
        out = []
        sent = self.positions.get(answer.pk)
        if sent is None:
            if answer.pk <= self.latest:
                return b""  # finished and sent before
            self._sent_up_to(answer.pk, 0)
            meta, question = events.answer_payload(answer), events.question_payload(answer.question)
            out.append(self._event("turn", {"answer": meta, "question": question}))
            sent = 0
        if answer.position > sent:
            self._sent_up_to(answer.pk, answer.position)
            out.append(self._delta(answer.pk, answer.position, answer.text[sent:]))
        if not answer.is_streaming:
            out.append(self._done(events.done_event(answer)))
        return b"".join(out)

    def render_live(self, event: dict) -> bytes:
        """Encode a live event, or set ``needs_catch_up`` when it shows something was lost."""
        answer_id = event["answer"]
        if self.only is not None and answer_id != self.only:
            return b""
        kind = event["kind"]
        sent = self.positions.get(answer_id)
        if sent is None:
            if answer_id > self.latest:
                # A new answer, or its turn event lost: read it from the database. Not the
                # live turn: answers commit in id order but their turns are published by
                # different requests, and one committed earlier can be published later;
                # once past a newer one it would pass for "finished and sent before"
                # (measured: a stalled tab resumed without 1 answer of 1,201). The database
                # holds every answer committed before this one.
                self.needs_catch_up = True
            return b""
        if kind == "delta":
            if event["start"] > sent:
                self.needs_catch_up = True
                return b""
            end = event["position"]
            if end <= sent:
                return b""
            self._sent_up_to(answer_id, end)
            return self._delta(answer_id, end, event["text"][sent - event["start"] :])
        if kind == "done":
            if event["position"] > sent:
                self.needs_catch_up = True  # text it announces never reached us
                return b""
            return self._done(event)
        return b""

    def _delta(self, answer_id: int, position: int, text: str) -> bytes:
        return self._event("delta", {"answer": answer_id, "position": position, "text": text})

    def _done(self, event: dict) -> bytes:
        """Forget a finished answer, then encode its ``done`` (the cursor without it)."""
        answer_id = event["answer"]
        self.positions.pop(answer_id, None)
        if answer_id == self.latest:
            self.latest_position = event["position"]
        if answer_id == self.only:
            self.finished = True
        return self._event("done", {key: value for key, value in event.items() if key != "kind"})


STREAMS_OPEN = metrics.streams_open.labels("assistant")
SLOW_CLOSED = metrics.slow_clients_closed.labels("assistant", "sse_overflow")


async def conversation_stream(
    conversation_id: int, *, after: Cursor | None, only: int | None = None
) -> AsyncIterator[bytes]:
    """Yield the SSE bytes of a conversation (see the module docstring).

    With ``only``, the stream is the POST's: that one answer, ending after its ``done``
    event with ``data: [DONE]``.
    """
    get_runner().ensure_upkeep()  # this process also notices crashed generations
    STREAMS_OPEN.inc()
    try:
        with get_watchers().watching(conversation_id):
            async with aclosing(_stream(conversation_id, after, only)) as chunks:
                async for chunk in chunks:
                    yield chunk
    finally:
        STREAMS_OPEN.dec()


async def _stream(
    conversation_id: int, after: Cursor | None, only: int | None
) -> AsyncIterator[bytes]:
    keepalive = settings.SSE_KEEPALIVE_SECONDS
    async with get_hub().subscribe(
        events.conversation_key(conversation_id), maxsize=settings.SSE_BUFFER_EVENTS
    ) as live:
        yield encode_retry(settings.SSE_RETRY_MILLISECONDS)
        state = ViewState(after, only)
        while True:
            async with aclosing(catch_up(conversation_id, state)) as chunks:
                async for chunk in chunks:
                    yield chunk
            state.needs_catch_up = False
            while not state.needs_catch_up:
                if state.finished:
                    yield DONE_SENTINEL
                    return
                if not await live.wait(keepalive):
                    yield KEEPALIVE
                    continue
                if live.overflowed:
                    if not live.restarting:
                        SLOW_CLOSED.inc()
                    return  # the client reconnects with Last-Event-ID and catches up
                out = []
                for item in live.take():
                    if item is RESYNC:
                        state.needs_catch_up = True
                    elif item.get("kind") in ("turn", "delta", "done"):
                        out.append(state.render_live(item))
                        metrics.delivered.add("assistant", item["kind"])
                if out:
                    yield b"".join(out)


async def catch_up(conversation_id: int, state: ViewState) -> AsyncIterator[bytes]:
    """Yield what the database holds beyond what ``state`` says the client has."""
    async with aclosing(selectors.answers_from(conversation_id, state.replay_from())) as rows:
        async for answer in rows:
            chunk = state.render_row(answer)
            if chunk:
                yield chunk
