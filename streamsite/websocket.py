"""Let a WebSocket consumer write pre-built frames, and send close codes daphne can send.

Under uvicorn's sans-I/O protocol (``manage.py serve``) a frame built once per event can
be written to each plain connection as it is (``FrameWriter``, below), through the server's
``send`` that ``streamsite.server_send.ServerSendMiddleware`` leaves in the scope.

Under daphne (``runserver``) that middleware also translates close codes daphne cannot
send (``daphne_close_code``).
"""

from __future__ import annotations

# Close codes under daphne -----------------------------------------------------------------


def is_daphne_send(send) -> bool:
    """Whether ``send`` is daphne's (``functools.partial(Server.handle_reply, protocol)``)."""
    owner = getattr(getattr(send, "func", None), "__self__", None)
    return type(owner).__module__.startswith("daphne.")


def daphne_close_code(code: int) -> int:
    """The close code daphne sends for ``code``: RFC 6455's 1001-1999 become 4001-4999.

    daphne closes through autobahn, whose ``sendClose`` accepts only 1000 and 3000-4999
    (it raises "invalid close code 1009" for the rest, leaving the socket open and a
    traceback in the log). The 4000 range is the application's own, so 1009 (too large),
    1011 (server error), 1012 (restart) and 1013 (try again later) go out as 4009, 4011,
    4012 and 4013: the same meaning, offset by 3000 (docs/protocol.md). uvicorn sends the
    RFC codes as they are.
    """
    if 1000 < code < 2000:
        return code + 3000
    return code


class DaphneCloseCodes:
    """daphne's ``send``, with close codes it cannot send translated (``daphne_close_code``).

    Development only (``runserver``): production's uvicorn gets the plain ``send``.
    """

    __slots__ = ("_send",)

    def __init__(self, send) -> None:
        self._send = send

    async def __call__(self, message: dict) -> None:
        if message["type"] == "websocket.close" and message.get("code") is not None:
            message = {**message, "code": daphne_close_code(message["code"])}
        await self._send(message)


# Pre-built frames -------------------------------------------------------------------------

try:  # uvicorn's sans-I/O WebSocket protocol (``manage.py serve``); absent: no fast path
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
    from websockets.frames import Frame, Opcode
    from websockets.protocol import State
except ImportError:  # pragma: no cover
    WebSocketsSansIOProtocol = None


def text_frame(text: str) -> bytes:
    """The bytes of one unmasked, final text frame carrying ``text`` (a server's frame).

    Built once per event, it is the same for every connection that negotiated no
    extension, so ``FrameWriter`` can write it to each of them as it is.
    """
    return Frame(Opcode.TEXT, text.encode()).serialize(mask=False, extensions=[])


class FrameWriter:
    """Write pre-built frames straight to a connection of uvicorn's sans-I/O protocol.

    Why: a room's message goes to every socket of the room, and through ASGI each
    ``websocket.send`` encodes the text, builds and serialises a frame for that one
    socket and joins its output before the write: about half of a busy chat server's time
    (py-spy, docs/benchmarks.md). The frame bytes are the same for every socket without
    compression, so they are built once per event and only the write is per socket.

    This reaches past ASGI into uvicorn's protocol object (pinned in requirements.txt;
    ``streamsite/tests/test_websocket.py`` runs it against the real server). ``write``
    does it only while the connection is plainly open and writable, nothing is
    negotiated that would change the bytes (permessage-deflate), and no close was sent;
    otherwise it returns False and the caller sends through ASGI as usual, which waits for
    flow control and raises for a closed connection.
    """

    __slots__ = ("_protocol",)

    def __init__(self, protocol) -> None:
        self._protocol = protocol

    @classmethod
    def for_send(cls, send) -> FrameWriter | None:
        """A writer for the connection behind the server's ``send``, or None (another
        server, or a connection whose frames are not plain: compression)."""
        protocol = getattr(send, "__self__", None)
        if WebSocketsSansIOProtocol is None or type(protocol) is not WebSocketsSansIOProtocol:
            return None
        if protocol.conn.extensions:
            return None
        return cls(protocol)

    def writable(self) -> bool:
        """Whether a frame written now goes out as it is: open, writable, no close sent."""
        protocol = self._protocol
        return not (
            protocol.close_sent
            or protocol.disconnected
            or not protocol.writable.is_set()
            or protocol.conn.state is not State.OPEN
        )

    def write(self, frame: bytes) -> bool:
        """Write ``frame`` (one frame, or several one after the other) now if the
        connection can take it as it is; False otherwise."""
        if not self.writable():
            return False
        self._protocol.transport.write(frame)
        return True


class ResumedSend:
    """Finish, in a task, a coroutine that was started by hand and is now suspended.

    ``chat.socket_writes.SocketWrites.write_now`` drives the server's ``send`` coroutine
    itself, to avoid a task per frame; in the rare case it suspends (the connection must
    drain first), this hands the future it is blocked on to a task, and relays everything
    after: results, exceptions, cancellation.
    """

    __slots__ = ("blocked_on", "coroutine")

    def __init__(self, coroutine, blocked_on) -> None:
        self.coroutine = coroutine
        self.blocked_on = blocked_on

    async def wait(self):
        return await self

    def __await__(self):
        coroutine, waiting_for = self.coroutine, self.blocked_on
        while True:
            try:
                result = yield waiting_for
            except BaseException as error:  # cancellation included: pass it on
                try:
                    waiting_for = coroutine.throw(error)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    waiting_for = coroutine.send(result)
                except StopIteration as stop:
                    return stop.value
