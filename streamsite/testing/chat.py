"""A chat socket for tests: in-process (Channels' communicator) or against a live server.

Both speak JSON frames and offer the same waits, so a behaviour can be checked on the ASGI
app directly (fast, one event loop) and on a real server (the wire, several processes).
Every wait has a deadline: a frame that never comes fails the test, it does not hang it.
"""

from __future__ import annotations

import asyncio
import json
import uuid

from channels.testing import WebsocketCommunicator

#: How long a test waits for a frame it expects.
FRAME_TIMEOUT = 10
ORIGIN = "http://127.0.0.1:8000"


class ChatClosed(Exception):
    """The server closed the socket while a frame was expected."""

    def __init__(self, code: int | None) -> None:
        super().__init__(f"socket closed with code {code}")
        self.code = code


class _Frames:
    """What both kinds of socket share: a log of frames and waits on it."""

    def __init__(self) -> None:
        self.frames: list[dict] = []
        self._read = 0
        self.close_code: int | None = None

    async def _next_raw(self, within: float) -> dict:
        raise NotImplementedError

    async def send(self, frame: dict | str) -> None:
        raise NotImplementedError

    async def next(self, within: float = FRAME_TIMEOUT) -> dict:
        """The next frame not yet read."""
        if self._read < len(self.frames):
            frame = self.frames[self._read]
        else:
            frame = await self._next_raw(within)
            self.frames.append(frame)
        self._read += 1
        return frame

    async def until(self, predicate, within: float = FRAME_TIMEOUT) -> dict:
        """Read frames until one matches ``predicate``; return it."""
        deadline = asyncio.get_running_loop().time() + within
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise TimeoutError(f"no matching frame in {within} s; got {self.frames!r}")
            frame = await self.next(remaining)
            if predicate(frame):
                return frame

    async def first(self, predicate, within: float = FRAME_TIMEOUT) -> dict:
        """The first frame matching ``predicate``, among those read already or those to come."""
        for frame in self.frames[: self._read]:
            if predicate(frame):
                return frame
        return await self.until(predicate, within)

    async def until_type(self, kind: str, within: float = FRAME_TIMEOUT) -> dict:
        return await self.until(lambda frame: frame.get("type") == kind, within)

    async def joined(self) -> tuple[dict, dict]:
        """The first two frames: presence, then history."""
        presence = await self.next()
        history = await self.next()
        assert presence["type"] == "presence", presence
        assert history["type"] == "history", history
        return presence, history

    async def send_message(self, body: str, client_id: str | None = None) -> str:
        client_id = client_id or str(uuid.uuid4())
        await self.send({"type": "message.send", "client_id": client_id, "body": body})
        return client_id

    async def ask_assistant(self, question: str) -> tuple[dict, int]:
        """Send ``question`` (which mentions @assistant): its ``ack``, and the id of the
        message that shows the assistant's answer."""
        client_id = await self.send_message(question)
        ack = await self.until(lambda f: f.get("type") == "ack" and f["client_id"] == client_id)
        # The room's frames and the ack come from two tasks: either may come first.
        shown = await self.first(
            lambda f: (
                f.get("type") == "message"
                and f["message"].get("assistant") is True
                and f["message"]["id"] > ack["id"]
            )
        )
        return ack, shown["message"]["id"]

    async def ping(self) -> None:
        """Round trip: every frame the server sent before the pong has been read."""
        await self.send({"type": "ping"})
        await self.until_type("pong")

    async def closed(self, within: float = FRAME_TIMEOUT) -> int:
        """Read until the server closes; return the close code."""
        try:
            while True:
                await self.next(within)
        except ChatClosed as closed:
            return closed.code

    def messages(self) -> list[dict]:
        """The payloads of every ``message`` frame read so far."""
        return [frame["message"] for frame in self.frames if frame.get("type") == "message"]

    def answer(self, message_id: int) -> dict | None:
        """The assistant's answer in message ``message_id`` as this socket was shown it.

        Replays the frames read so far as the browser client applies them:
        ``{"text", "status", "position", "error"}``, or None if it was never framed.
        Fails on a delta that leaves a gap or repeats text, or a done announcing text
        that never came: the server sends each piece of an answer once per socket.
        """
        state = None
        for frame in self.frames:
            kind = frame.get("type")
            if kind in ("history", "message"):
                for payload in frame["messages"] if kind == "history" else [frame["message"]]:
                    if payload["id"] != message_id or not payload.get("assistant"):
                        continue
                    fresher = state is None or payload["position"] > state["position"]
                    if fresher or payload.get("status") != "streaming":
                        state = {key: payload.get(key) for key in ("status", "position", "error")}
                        state["text"] = payload["body"]
            elif kind == "message.delta" and frame["id"] == message_id:
                assert state is not None, f"a delta before its message: {frame}"
                start = frame["position"] - len(frame["text"])
                assert start == state["position"], f"at {state['position']}, got {frame}"
                state["text"] += frame["text"]
                state["position"] = frame["position"]
            elif kind == "message.done" and frame["id"] == message_id:
                assert state is not None, f"a done before its message: {frame}"
                assert frame["position"] <= state["position"], f"text never came: {frame}"
                state["text"] = state["text"][: frame["position"]]
                state.update(
                    status=frame["status"], position=frame["position"], error=frame["error"]
                )
        return state

    async def answer_done(self, message_id: int, within: float = FRAME_TIMEOUT) -> dict:
        """Read until the answer in message ``message_id`` ends; its ``answer`` state."""
        await self.until(
            lambda frame: frame.get("type") == "message.done" and frame["id"] == message_id,
            within,
        )
        return self.answer(message_id)


class LocalChatSocket(_Frames):
    """A socket on the ASGI application in this process."""

    def __init__(self, path: str, cookies: dict[str, str] | None = None, origin=ORIGIN) -> None:
        super().__init__()
        from streamsite.asgi import application

        headers = [(b"host", b"127.0.0.1:8000")]
        if origin is not None:
            headers.append((b"origin", origin.encode()))
        if cookies:
            cookie = "; ".join(f"{name}={value}" for name, value in cookies.items())
            headers.append((b"cookie", cookie.encode()))
        self.communicator = WebsocketCommunicator(application, path, headers=headers)
        self.accepted = False

    async def connect(self) -> LocalChatSocket:
        self.accepted, _ = await self.communicator.connect(timeout=FRAME_TIMEOUT)
        return self

    async def _next_raw(self, within: float) -> dict:
        if self.close_code is not None:
            raise ChatClosed(self.close_code)
        output = await self.communicator.receive_output(within)
        if output["type"] == "websocket.close":
            self.close_code = output.get("code", 1000)
            raise ChatClosed(self.close_code)
        return json.loads(output["text"])

    async def send(self, frame: dict | str | bytes) -> None:
        # send_input, not send_to: send_to refuses an empty frame, which clients can send.
        if isinstance(frame, bytes):
            await self.communicator.send_input({"type": "websocket.receive", "bytes": frame})
        else:
            text = frame if isinstance(frame, str) else json.dumps(frame)
            await self.communicator.send_input({"type": "websocket.receive", "text": text})

    async def disconnect(self) -> None:
        if self.communicator.future.done():
            return  # the application ended (closed, or cancelled by a timed-out wait)
        await self.communicator.disconnect(timeout=FRAME_TIMEOUT)


class RemoteChatSocket(_Frames):
    """A socket on a live server, over the network (``websockets``' client)."""

    def __init__(self, url: str, cookies: dict[str, str] | None = None, origin=None) -> None:
        super().__init__()
        self.url = url
        self.cookies = cookies or {}
        self.origin = origin
        self.connection = None

    async def connect(self) -> RemoteChatSocket:
        from websockets.asyncio.client import connect

        headers = {}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        origin = self.origin or self.url.replace("ws://", "http://").split("/ws/")[0]
        self.connection = await connect(
            self.url,
            additional_headers=headers,
            origin=origin,
            open_timeout=FRAME_TIMEOUT,
            # Buffer every frame: a test that reads late must not stall the connection
            # (and its close handshake) behind an unread queue.
            max_queue=None,
        )
        return self

    async def _next_raw(self, within: float) -> dict:
        from websockets.exceptions import ConnectionClosed

        try:
            # asyncio.timeout, not wait_for: Python 3.11's wait_for returns a frame that
            # arrives as the task is cancelled and swallows the cancellation, so a reader
            # cancelled under traffic could read on forever (the fault campaign hung so).
            async with asyncio.timeout(within):
                text = await self.connection.recv()
        except ConnectionClosed as closed:
            self.close_code = closed.rcvd.code if closed.rcvd else 1006
            raise ChatClosed(self.close_code) from None
        return json.loads(text)

    async def send(self, frame: dict | str | bytes) -> None:
        data = frame if isinstance(frame, str | bytes) else json.dumps(frame)
        await self.connection.send(data)

    async def disconnect(self) -> None:
        if self.connection is not None:
            await self.connection.close()
