"""Write a streamed response's chunks straight to uvicorn's connection, between its parts.

Why: a notification to 1,000 users is 1,000 streams each writing a few hundred bytes. Through
ASGI each of them wakes the stream's task, resumes its async generators (the stream's, the
logging wrapper's, Django's response iterator), builds a ``http.response.body`` message and
awaits the server's ``send``, which frames the chunk and writes it: about two thirds of a
delivery's CPU, where the write itself is the rest (py-spy, docs/benchmarks.md). A stream
whose generator is parked waiting for its next event has nothing in flight through ASGI, so
the hub can hand it the event and the stream can write the chunk itself, framed as uvicorn
frames it (HTTP/1.1 chunked transfer coding), without a task wake.

This reaches past ASGI into uvicorn's httptools protocol (pinned in requirements.txt;
``streamsite/tests/test_http_chunks.py`` runs it against the real server). ``ChunkWriter``
writes only while the response is started, chunked, not complete, the client connected
and the transport not asking us to pause; otherwise ``writable()`` is False and the caller
yields the chunk through ASGI as usual, which waits for flow control. Other servers
(daphne, the h11 protocol, the test client) get no writer.
"""

from __future__ import annotations

try:  # uvicorn's httptools protocol (``manage.py serve``); absent: no fast path
    from uvicorn.protocols.http.httptools_impl import RequestResponseCycle
except ImportError:  # pragma: no cover
    RequestResponseCycle = None

from streamsite.server_send import http_server_send


class ChunkWriter:
    """Write body chunks to the connection behind uvicorn's ``send`` for one response."""

    __slots__ = ("_cycle",)

    def __init__(self, cycle) -> None:
        self._cycle = cycle

    @classmethod
    def for_this_request(cls) -> ChunkWriter | None:
        """A writer for the response to the HTTP request being handled, or None (another
        server, or no ``streamsite.server_send.ServerSendMiddleware`` around the app)."""
        cycle = getattr(http_server_send.get(), "__self__", None)
        if RequestResponseCycle is None or type(cycle) is not RequestResponseCycle:
            return None
        return cls(cycle)

    def writable(self) -> bool:
        """Whether a chunk written now goes out as the server's own ``send`` would write it:
        the response's headers are sent, its body is chunked and not finished, the client
        is still there and the transport has room (no flow control to wait for)."""
        cycle = self._cycle
        return (
            cycle.response_started
            and cycle.chunked_encoding is True
            and not cycle.response_complete
            and not cycle.disconnected
            and not cycle.flow.write_paused
            and not cycle.transport.is_closing()
        )

    def write(self, body: bytes) -> None:
        """Write ``body`` as one chunk; only after ``writable()`` said yes, with nothing in
        flight through ASGI (the caller's generator is parked), and never empty (an empty
        chunk ends the body)."""
        self._cycle.transport.write(b"%x\r\n%b\r\n" % (len(body), body))
