"""One chat socket's writes, in order, whether its outbox's task or the hub's step makes them.

Waking a task per socket for every event costs more than the write itself, so while a
socket's outbox has nothing queued the hub's step writes the event's frame at once
(``chat.outbox.RoomOutbox.deliver_now``, then ``write_now`` here), without a task:

- A room's shared frame (the same bytes for every plain socket: ``FrameWriter``) is
  written as it is. The shared frames of one hub step (a batch of messages taken from
  Redis together) are joined and written once, right after the step, in one system call.
- Any other frame goes through the server's ``send``, driven by hand: it completes without
  suspending when the connection is writable. If it does suspend (flow control), it
  finishes in a task (``ResumedSend``).

What the outbox's task sends afterwards (``send``) goes out after both: the joined frames
are written first, the suspended send is awaited. A direct write that fails means the
client went away: the socket counts as closed, and the consumer's disconnect follows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from chat import protocol
from streamsite.websocket import FrameWriter, ResumedSend


class SocketWrites:
    """The writes and the close of one chat socket (see the module docstring).

    ``send`` takes an ASGI ``websocket.send`` message; ``close`` closes the socket with a
    code. Nothing is sent once the socket is closed.
    """

    __slots__ = ("_close", "_coalesced", "_send", "closed", "frames", "inflight")

    def __init__(
        self, send: Callable[[dict], Awaitable[None]], close: Callable[[int], Awaitable[None]]
    ) -> None:
        self._send = send
        self._close = close
        # Room frames built once per event, written as they are (uvicorn, plain sockets).
        self.frames = FrameWriter.for_send(send)
        # Shared frames the hub handed over in its current step, written together after it.
        self._coalesced: list[bytes] | None = None
        # A frame whose direct send had to wait for the connection to drain.
        self.inflight: asyncio.Task | None = None
        self.closed = False

    async def send(self, message: dict) -> None:
        """Send ``message`` through the server's ``send``, after what was written directly."""
        if self._coalesced is not None:
            self._write_coalesced()
        if self.inflight is not None:
            await self.inflight  # a direct send still draining goes out first
        if not self.closed:
            await self._send(message)

    async def close(self, code: int) -> None:
        """Close the socket with ``code``, once."""
        if not self.closed:
            self.closed = True
            await self._close(code)

    def write_now(self, event: dict, message: dict) -> None:
        """Write ``message``, the frame of ``event``, without awaiting anything.

        Only while nothing is in flight (``inflight``) and the socket is open: the caller
        checks, and otherwise leaves the event to the outbox's task.
        """
        frames = self.frames  # the room's shared frame, written as it is when it can be
        if frames is not None:
            shared = protocol.shared_frame_bytes(event, message)
            if shared is not None and frames.writable():
                # Written with the other frames of this hub step, in one system call,
                # right after the step (before the writer task could wake).
                if self._coalesced is None:
                    self._coalesced = [shared]
                    asyncio.get_running_loop().call_soon(self._write_coalesced)
                else:
                    self._coalesced.append(shared)
                return
        if self._coalesced is not None:
            self._write_coalesced()  # what came before this frame goes first
        sending = self._send(message)
        try:
            blocked_on = sending.send(None)
        except StopIteration:
            return
        except Exception:
            # The client is gone (ClientDisconnected): the consumer's disconnect follows.
            self.closed = True
            return
        self.inflight = asyncio.ensure_future(ResumedSend(sending, blocked_on).wait())
        self.inflight.add_done_callback(self._sent_inflight)

    def _write_coalesced(self) -> None:
        frames = self._coalesced
        if frames is None:
            return  # written already (before a frame sent through ASGI)
        self._coalesced = None
        # False only when the socket is closing or gone: the client resumes by id.
        self.frames.write(b"".join(frames))

    def _sent_inflight(self, task: asyncio.Task) -> None:
        self.inflight = None
        if not task.cancelled() and task.exception() is not None:
            self.closed = True  # the client went away mid-write
