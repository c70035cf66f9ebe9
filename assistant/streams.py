"""A conversation's event stream: what a viewer missed, from the database, then live.

Every event's id is ``<answer>:<position>``: how far the client has that answer. A client
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
from streamsite.streaming.hub import RESYNC, get_hub
from streamsite.streaming.sse import KEEPALIVE, encode_json_object, encode_retry

#: The end of an answer's POST stream, as OpenAI-style clients expect it.
DONE_SENTINEL = b"data: [DONE]\n\n"
_CURSOR = re.compile(r"(\d{1,18}):(\d{1,10})", re.ASCII)


def parse_cursor(raw: str | None) -> tuple[int, int] | None:
    """Parse ``<answer>:<position>``; None for nothing; ``ValueError`` for anything else."""
    if raw is None or raw == "":
        return None
    match = _CURSOR.fullmatch(raw)
    if match is None:
        raise ValueError("The stream position must look like <answer>:<position>.")
    return int(match[1]), int(match[2])


def sse(event: str, answer_id: int, position: int, payload: dict) -> bytes:
    data = encode_json_object(payload)
    return b"event: %s\nid: %d:%d\ndata: %s\n\n" % (event.encode(), answer_id, position, data)


def turn_bytes(answer_id: int, meta: dict, question: dict) -> bytes:
    return sse("turn", answer_id, 0, {"answer": meta, "question": question})


def delta_bytes(answer_id: int, position: int, text: str) -> bytes:
    return sse(
        "delta", answer_id, position, {"answer": answer_id, "position": position, "text": text}
    )


def done_bytes(event: dict) -> bytes:
    payload = {key: value for key, value in event.items() if key != "kind"}
    return sse("done", event["answer"], event["position"], payload)


class ViewState:
    """What one stream has sent: how far each unfinished answer, and the newest answer."""

    __slots__ = ("finished", "latest", "needs_catch_up", "only", "positions")

    def __init__(self, after: tuple[int, int] | None, only: int | None = None) -> None:
        self.only = only
        # Answers sent but not finished: id -> position sent.
        self.positions: dict[int, int] = {}
        self.latest = 0  # the newest answer this stream has sent (or the client had)
        if after is not None:
            self.positions[after[0]] = after[1]
            self.latest = after[0]
        self.needs_catch_up = False
        self.finished = False

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
            out.append(
                turn_bytes(
                    answer.pk,
                    events.answer_payload(answer),
                    events.question_payload(answer.question),
                )
            )
            sent = 0
        if answer.position > sent:
            out.append(delta_bytes(answer.pk, answer.position, answer.text[sent:]))
            sent = answer.position
        self.latest = max(self.latest, answer.pk)
        if answer.is_streaming:
            self.positions[answer.pk] = sent
        else:
            out.append(done_bytes(events.done_event(answer)))
            self._finished(answer.pk)
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
                if kind == "turn":
                    self.positions[answer_id] = 0
                    self.latest = answer_id
                    return turn_bytes(answer_id, event["meta"], event["question"])
                self.needs_catch_up = True  # its turn event was lost
            return b""
        if kind == "delta":
            if event["start"] > sent:
                self.needs_catch_up = True
                return b""
            end = event["position"]
            if end <= sent:
                return b""
            self.positions[answer_id] = end
            return delta_bytes(answer_id, end, event["text"][sent - event["start"] :])
        if kind == "done":
            if event["position"] > sent:
                self.needs_catch_up = True  # text it announces never reached us
                return b""
            self._finished(answer_id)
            return done_bytes(event)
        return b""

    def _finished(self, answer_id: int) -> None:
        self.positions.pop(answer_id, None)
        if answer_id == self.only:
            self.finished = True


async def conversation_stream(
    conversation_id: int, *, after: tuple[int, int] | None, only: int | None = None
) -> AsyncIterator[bytes]:
    """Yield the SSE bytes of a conversation (see the module docstring).

    With ``only``, the stream is the POST's: that one answer, ending after its ``done``
    event with ``data: [DONE]``.
    """
    get_runner().ensure_upkeep()  # this process also notices crashed generations
    with get_watchers().watching(conversation_id):
        async with aclosing(_stream(conversation_id, after, only)) as chunks:
            async for chunk in chunks:
                yield chunk


async def _stream(
    conversation_id: int, after: tuple[int, int] | None, only: int | None
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
                    return  # the client reconnects with Last-Event-ID and catches up
                out = []
                for item in live.take():
                    if item is RESYNC:
                        state.needs_catch_up = True
                    elif item.get("kind") in ("turn", "delta", "done"):
                        out.append(state.render_live(item))
                if out:
                    yield b"".join(out)


async def catch_up(conversation_id: int, state: ViewState) -> AsyncIterator[bytes]:
    """Yield what the database holds beyond what ``state`` says the client has."""
    async with aclosing(selectors.answers_from(conversation_id, state.replay_from())) as rows:
        async for answer in rows:
            chunk = state.render_row(answer)
            if chunk:
                yield chunk
