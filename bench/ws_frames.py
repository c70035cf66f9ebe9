"""The WebSocket wire format the chat load generator speaks (RFC 6455, RFC 7692).

The upgrade request (with the session cookie, an allowed ``Origin``, and, when asked,
permessage-deflate offered exactly as Chromium offers it), masked client frames, and the
per-socket deflate state once the server has accepted the extension. Parsing server
frames stays in ``bench.ws_client``, where it runs per socket read.
"""

from __future__ import annotations

import base64
import os
import zlib

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10
FIN, RSV1 = 0x80, 0x40
#: What Chromium offers on every WebSocket (and Firefox alike).
CHROMIUM_EXTENSIONS = "permessage-deflate; client_max_window_bits"
#: RFC 7692 7.2.1: a message's deflate output ends with this empty block, removed on the wire.
DEFLATE_TAIL = b"\x00\x00\xff\xff"


def handshake(path: str, port: int, cookie: str | None, *, compression: bool = False) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    cookie_line = f"Cookie: sessionid={cookie}\r\n" if cookie else ""
    extensions = f"Sec-WebSocket-Extensions: {CHROMIUM_EXTENSIONS}\r\n" if compression else ""
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Origin: http://127.0.0.1:{port}\r\n{cookie_line}{extensions}User-Agent: bench\r\n\r\n"
    ).encode()


class Deflate:
    """permessage-deflate as the server accepted it (RFC 7692), for one socket.

    The inflater always has a 32 KB window (it reads any smaller one); the deflater uses
    the window the server allowed the client. Both are made on first use: only senders
    deflate, and a socket that never gets a compressed frame holds no zlib state.
    """

    __slots__ = ("client_bits", "client_reset", "deflater", "inflater", "server_reset")

    def __init__(self, response_value: str) -> None:
        params = {}
        for part in response_value.split(";")[1:]:
            name, _, value = part.strip().partition("=")
            params[name.strip().lower()] = value.strip().strip('"')
        self.server_reset = "server_no_context_takeover" in params
        self.client_reset = "client_no_context_takeover" in params
        # zlib cannot write a raw deflate stream with an 8-bit window; 9 is the least.
        self.client_bits = max(9, int(params.get("client_max_window_bits") or 15))
        self.inflater = self.deflater = None

    def inflate(self, payload: bytes) -> bytes:
        if self.inflater is None:
            self.inflater = zlib.decompressobj(-15)
        data = self.inflater.decompress(payload + DEFLATE_TAIL)
        if self.server_reset:
            self.inflater = None
        return data

    def deflate(self, data: bytes) -> bytes:
        if self.deflater is None:
            self.deflater = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED,
                                             -self.client_bits)  # fmt: skip
        out = self.deflater.compress(data) + self.deflater.flush(zlib.Z_SYNC_FLUSH)
        if self.client_reset:
            self.deflater = None
        return out[:-4] if out.endswith(DEFLATE_TAIL) else out


def negotiated_extension(head: bytes) -> str | None:
    """The ``Sec-WebSocket-Extensions`` value of a 101 response, if any."""
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"sec-websocket-extensions":
            return value.strip().decode()
    return None


def client_frame(opcode: int, payload: bytes, *, rsv1: bool = False) -> bytes:
    """A masked client frame (FIN set; RSV1 for a compressed message)."""
    length = len(payload)
    first = FIN | opcode | (RSV1 if rsv1 else 0)
    if length < 126:
        head = bytes((first, 0x80 | length))
    elif length < 65536:
        head = bytes((first, 0x80 | 126)) + length.to_bytes(2, "big")
    else:
        head = bytes((first, 0x80 | 127)) + length.to_bytes(8, "big")
    key = os.urandom(4)
    if not length:
        return head + key
    stream = key * (length // 4 + 1)
    masked = int.from_bytes(payload, "big") ^ int.from_bytes(stream[:length], "big")
    return head + key + masked.to_bytes(length, "big")
