"""A minimal HTTP/1.1 client for the load generator: one GET, the head, a de-chunked body.

Fast enough to hold thousands of streams in one process: it parses nothing but the status
line, ``Transfer-Encoding: chunked`` and chunk sizes, once per socket read.
"""

from __future__ import annotations

import asyncio
import time


class Dechunker:
    """Undo HTTP/1.1 chunked transfer coding, one read at a time."""

    __slots__ = ("ended", "left", "pending", "skip")

    def __init__(self) -> None:
        self.left = 0  # bytes of chunk data still to come
        self.skip = 0  # bytes of the CRLF after chunk data still to skip
        self.pending = b""  # an incomplete chunk-size line
        self.ended = False

    def feed(self, data: bytes) -> bytes:
        if self.pending:
            data = self.pending + data
            self.pending = b""
        out = []
        position, size = 0, len(data)
        while position < size and not self.ended:
            if self.left:
                take = min(self.left, size - position)
                out.append(data[position : position + take])
                position += take
                self.left -= take
                if not self.left:
                    self.skip = 2
            elif self.skip:
                step = min(self.skip, size - position)
                position += step
                self.skip -= step
            else:
                end = data.find(b"\r\n", position)
                if end < 0:
                    self.pending = data[position:]
                    break
                length = int(data[position:end].split(b";", 1)[0], 16)
                position = end + 2
                if length == 0:
                    self.ended = True
                else:
                    self.left = length
        return b"".join(out)


class HTTPResponse(asyncio.Protocol):
    """The head of an HTTP response, then its body handed to ``body_received``."""

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.transport: asyncio.Transport | None = None
        self.head = b""
        self.status: int | None = None
        self.dechunker: Dechunker | None = None
        self.done: asyncio.Future = asyncio.get_running_loop().create_future()

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if self.status is None:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            head, data = self.head[:end], self.head[end + 4 :]
            self.head = b""
            lines = head.split(b"\r\n")
            self.status = int(lines[0].split(b" ", 2)[1])
            headers = b"\r\n".join(lines[1:]).lower()
            if b"transfer-encoding: chunked" in headers:
                self.dechunker = Dechunker()
            self.head_received()
            if self.status != 200 or not data:
                return
        elif self.status != 200:
            return
        if self.dechunker is not None:
            data = self.dechunker.feed(data)
        self.body_received(data)
        if self.dechunker is not None and self.dechunker.ended:
            self.finished(None)

    def head_received(self) -> None:
        pass

    def body_received(self, data: bytes) -> None:
        pass

    def finished(self, error: str | None) -> None:
        if not self.done.done():
            self.done.set_result(error)
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc) -> None:
        self.finished(f"closed: {type(exc).__name__}" if exc else "closed")


class Download(HTTPResponse):
    """A whole response body counted, not kept: bytes, lines, first and last byte times."""

    def __init__(self, request: bytes) -> None:
        super().__init__(request)
        self.bytes = self.lines = 0
        self.first_byte: float | None = None

    def body_received(self, data: bytes) -> None:
        if self.first_byte is None:
            self.first_byte = time.monotonic()
        self.bytes += len(data)
        self.lines += data.count(b"\n")

    def head_received(self) -> None:
        if self.status != 200:
            self.finished(f"HTTP {self.status}")


def get_request(path: str, port: int, cookie: str, *, accept: str, close: bool = False) -> bytes:
    """The bytes of a GET as a logged-in browser sends it (its session cookie)."""
    connection = "Connection: close\r\n" if close else ""
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: {accept}\r\n"
        f"Cache-Control: no-cache\r\nCookie: sessionid={cookie}\r\nUser-Agent: bench\r\n"
        f"{connection}\r\n"
    ).encode()
