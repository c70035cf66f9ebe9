"""Raw-socket SSE streams of the assistant for the load generator, and what they received.

A tab is ``GET /assistant/<c>/stream`` (from a cursor, reconnecting with ``Last-Event-ID``
when the server ends it, as ``EventSource`` does); an asker is ``POST .../messages`` with
the session cookie and a CSRF token, read to its ``[DONE]``. Events are parsed once per
socket read, complete events only; each delta's tokens are checked against what the stream
already had of that answer (``View``) and timed against their send stamps
(``bench.assistant_tokens``).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import zlib
from array import array
from collections import Counter

from bench.assistant_tokens import TOKEN, WHOLE
from bench.rawhttp import HTTPResponse

CSRF_TOKEN = secrets.token_hex(16)  # Django accepts a 32-character token of the client's


def get_request(path: str, port: int, cookie: str, last_event_id: str | None = None) -> bytes:
    resume = f"Last-Event-ID: {last_event_id}\r\n" if last_event_id else ""
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n"
        f"Cache-Control: no-cache\r\nCookie: sessionid={cookie}\r\nUser-Agent: bench\r\n"
        f"{resume}\r\n"
    ).encode()


def post_request(path: str, port: int, cookie: str, payload: dict) -> bytes:
    body = json.dumps(payload).encode()
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        f"Cookie: sessionid={cookie}; csrftoken={CSRF_TOKEN}\r\nX-CSRFToken: {CSRF_TOKEN}\r\n"
        f"User-Agent: bench\r\nConnection: close\r\n\r\n"
    ).encode() + body


class EventSplitter:
    """Bytes in, complete events out: what follows the last blank line waits for more."""

    def __init__(self) -> None:
        self.pending = b""

    def feed(self, data: bytes):
        """Yield (event name, id, data) of the events ``data`` completes."""
        data = self.pending + data
        end = data.rfind(b"\n\n")
        if end < 0:
            self.pending = data
            return
        self.pending = data[end + 2 :]
        yield from parse_events(data[:end])


def parse_events(block: bytes):
    """Yield (event name, id, data) of complete events; comments and ``retry`` are skipped."""
    for raw in block.split(b"\n\n"):
        name = event_id = None
        data = []
        for line in raw.split(b"\n"):
            if line.startswith(b"data: "):
                data.append(line[6:])
            elif line.startswith(b"event: "):
                name = line[7:].decode()
            elif line.startswith(b"id: "):
                event_id = line[4:].decode()
        if data or name:
            yield name or "message", event_id, b"\n".join(data)


class SSEStream(HTTPResponse):
    """One SSE response; each socket read's complete events go to ``sink.event``."""

    def __init__(self, request: bytes, sink, viewer: int) -> None:
        super().__init__(request)
        self.sink = sink
        self.viewer = viewer  # the logical viewer (a tab keeps its number across reconnects)
        self.splitter = EventSplitter()
        self.bytes = 0
        self.last_id: str | None = None
        self.first_body: float | None = None
        self.ready: asyncio.Future = asyncio.get_running_loop().create_future()

    def head_received(self) -> None:
        if self.status != 200:
            self.finished(f"HTTP {self.status}")

    def body_received(self, data: bytes) -> None:
        now = time.monotonic()
        self.bytes += len(data)
        if self.first_body is None:
            self.first_body = now
            if not self.ready.done():
                self.ready.set_result(now)  # the ``retry`` field: subscribed
        for name, event_id, payload in self.splitter.feed(data):
            if event_id:
                self.last_id = event_id
            self.sink.event(self, name, payload, now)

    def finished(self, error: str | None) -> None:
        if not self.ready.done():
            self.ready.set_result(None)
        super().finished(error)


class View:
    """What one viewer has of one answer: position, next token number, text checksum."""

    __slots__ = ("crc", "done_position", "next", "position", "status", "tokens")

    def __init__(self) -> None:
        self.position = self.next = self.tokens = self.crc = 0
        self.status: str | None = None
        self.done_position: int | None = None


class Tally:
    """Every delivery of a run: per-token latency, per-(viewer, answer) text, errors.

    A viewer applies deltas as docs/protocol.md asks of clients: one that ends at or before
    what it shows adds nothing, one that overlaps adds only its new end.

    ``window`` (monotonic start, end) keeps the latency of tokens sent inside it apart, and
    counts what was received inside it.
    """

    def __init__(self) -> None:
        self.views: dict[tuple[int, int], View] = {}
        self.latencies = array("d")  # seconds, every token delivery
        self.sent = array("d")  # the send stamp of each
        self.post_latencies = array("d")
        self.post_sent = array("d")  # each token once: its POST stream's copy
        self.errors: Counter[str] = Counter()
        self.deltas = self.tokens = self.events = 0
        #: Deltas that repeated text the viewer had (after a resume), dropped or trimmed as
        #: docs/protocol.md tells clients to.
        self.repeated = 0
        self.first_delta: dict[int, float] = {}  # answer -> first delta on its POST stream
        self.answers_of: dict[int, int] = {}  # answer -> conversation (from turn events)
        self.done_seen = asyncio.Event()  # set at every done event

    def resume_view(self, viewer: int, cursor: str | None) -> None:
        """A viewer starting from ``<answer>:<position>`` already has that much of it."""
        if cursor:
            answer, position = (int(part) for part in cursor.split(":"))
            self.views.setdefault((viewer, answer), View()).position = position

    def event(self, stream: SSEStream, name: str, payload: bytes, now: float) -> None:
        self.events += 1
        if name == "delta":
            self.delta(stream, json.loads(payload), now)
        elif name == "turn":
            answer = json.loads(payload)["answer"]["id"]
            self.views.setdefault((stream.viewer, answer), View())
            self.answers_of.setdefault(answer, getattr(stream, "conversation", 0))
            if stream.viewer < 0:
                stream.answer = answer  # a POST's stream is about one answer
        elif name == "done":
            done = json.loads(payload)
            view = self.views.setdefault((stream.viewer, done["answer"]), View())
            view.status, view.done_position = done["status"], done["position"]
            if done["position"] != view.position:
                self.errors["done position differs from text received"] += 1
            self.done_seen.set()

    def delta(self, stream: SSEStream, delta: dict, now: float) -> None:
        self.deltas += 1
        answer, text, position = delta["answer"], delta["text"], delta["position"]
        view = self.views.get((stream.viewer, answer))
        if view is None:
            view = self.views[(stream.viewer, answer)] = View()
        start = position - len(text)
        if position <= view.position:
            self.repeated += 1  # a resume sent it again: the client already shows it
            return
        if start < view.position:  # overlaps what the client shows: keep the rest
            self.repeated += 1
            text = text[view.position - start :]
        elif start > view.position:
            self.errors["gap between deltas"] += 1
        view.position = position
        view.crc = zlib.crc32(text.encode(), view.crc)
        if not WHOLE.fullmatch(text):
            self.errors["delta not made of whole tokens"] += 1
        post = stream.viewer < 0
        if post and answer not in self.first_delta:
            self.first_delta[answer] = now
        for number, sent in TOKEN.findall(text):
            number, sent = int(number), float(sent)
            if number != view.next:
                self.errors["token out of order or repeated"] += 1
            view.next = number + 1
            view.tokens += 1
            self.tokens += 1
            self.latencies.append(now - sent)
            self.sent.append(sent)
            if post:
                self.post_latencies.append(now - sent)
                self.post_sent.append(sent)


async def open_stream(port: int, request: bytes, sink, viewer: int) -> SSEStream:
    loop = asyncio.get_running_loop()
    stream = SSEStream(request, sink, viewer)
    await loop.create_connection(lambda: stream, "127.0.0.1", port)
    return stream


class Tab:
    """A tab following a conversation: reconnects from its last id when the server ends it
    (a full buffer does that), until ``close()``."""

    def __init__(self, port: int, cookie: str, conversation: int, after: str, sink, viewer: int):
        self.port, self.cookie, self.conversation = port, cookie, conversation
        self.last_id = after
        self.sink, self.viewer = sink, viewer
        self.stream: SSEStream | None = None
        self.reconnects = 0
        self.failures: Counter[str] = Counter()
        self.closing = False
        self.task: asyncio.Task | None = None
        sink.resume_view(viewer, after)

    async def connect(self) -> bool:
        path = f"/assistant/{self.conversation}/stream"
        request = get_request(path, self.port, self.cookie, self.last_id)
        self.stream = await open_stream(self.port, request, self.sink, self.viewer)
        self.stream.conversation = self.conversation
        return await self.stream.ready is not None

    async def follow(self) -> None:
        """Keep the tab open (started after the first ``connect``)."""
        while not self.closing:
            error = await self.stream.done
            if self.closing:
                return
            self.failures[error or "ended"] += 1
            self.last_id = self.stream.last_id or self.last_id
            self.reconnects += 1
            await asyncio.sleep(0.05)
            try:
                await self.connect()
            except OSError as exc:
                self.failures[f"reconnect: {exc}"] += 1
                await asyncio.sleep(0.5)

    def close(self) -> None:
        self.closing = True
        if self.stream is not None and self.stream.transport is not None:
            self.stream.transport.close()
