"""The chat socket's wire format: parse what clients send, encode what the server sends.

Pure functions, no I/O: the consumer (``chat.consumers``) calls them, and the fuzz tests
throw arbitrary frames at ``parse_frame``. docs/protocol.md is the reference; the rules that
matter for robustness:

- A client frame is a JSON object with a known ``type`` and correctly typed fields; anything
  else is a ``ProtocolError`` with code ``invalid`` that the consumer answers with an
  ``error`` frame, keeping the socket open. Unknown extra keys are ignored (forward
  compatibility). Booleans are not integers, ids are bounded to PostgreSQL's bigint.
- A string the server would have to store, send on or echo must be encodable as UTF-8:
  JSON can spell a lone surrogate (``"\\ud800"``), which no database, channel layer or
  socket can write. The body is checked by ``chat.validators``, the rest here.
- Only a frame larger than ``MAX_FRAME_BYTES`` closes the socket (``FrameTooLarge``): it is
  refused before it is parsed.
- Server frames are encoded once per event (``event_frame``) and the same text goes to every
  socket of the room.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

from chat.conf import HISTORY_MAX_LIMIT
from chat.validators import is_encodable
from streamsite.websocket import text_frame

#: The largest client frame accepted, in bytes of UTF-8 (docs/protocol.md).
MAX_FRAME_BYTES = 64 * 1024
#: The longest name a ``presence.more`` may page after (Django's usernames hold 150).
MAX_NAME_LENGTH = 150
#: Ids above this are not ids PostgreSQL's bigint can hold: refused before they reach SQL.
MAX_ID = 2**63 - 1

#: Close codes (docs/protocol.md). 4xxx are the application's; the others are RFC 6455's.
CLOSE_NOT_LOGGED_IN = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
CLOSE_TOO_LARGE = 1009
CLOSE_INTERNAL_ERROR = 1011
#: The client read too slowly (its buffer overflowed) or lost events: reconnect and resume.
CLOSE_TRY_AGAIN_LATER = 1013
#: The server is shutting down (a deploy, a restart): reconnect (to another process) and resume.
CLOSE_SERVICE_RESTART = 1012

#: The codes an ``error`` frame carries.
INVALID = "invalid"
TOO_LONG = "too_long"
RATE_LIMITED = "rate_limited"
FORBIDDEN = "forbidden"
NOT_FOUND = "not_found"
#: A message that asked the assistant was stored, but the assistant will not answer it.
ASSISTANT_UNAVAILABLE = "assistant_unavailable"
#: The largest position a ``message.stop`` may carry (answers are far shorter).
MAX_POSITION = 2**31 - 1


class ProtocolError(Exception):
    """A client frame the server refuses; answered with an ``error`` frame."""

    def __init__(
        self,
        code: str,
        detail: str,
        *,
        client_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.client_id = client_id
        self.retry_after = retry_after


class FrameTooLarge(Exception):
    """A client frame over ``MAX_FRAME_BYTES``: the socket is closed with 1009."""


@dataclass(frozen=True, slots=True)
class Send:
    client_id: str
    body: str


@dataclass(frozen=True, slots=True)
class Typing:
    pass


@dataclass(frozen=True, slots=True)
class History:
    before: int
    limit: int


@dataclass(frozen=True, slots=True)
class Resume:
    after: int


@dataclass(frozen=True, slots=True)
class Read:
    up_to: int


@dataclass(frozen=True, slots=True)
class Ping:
    pass


@dataclass(frozen=True, slots=True)
class PresenceMore:
    after: str


@dataclass(frozen=True, slots=True)
class Stop:
    """Stop the assistant's answer shown by message ``id``, at ``position`` (None: all)."""

    id: int
    position: int | None


Request = Send | Typing | History | Resume | Read | Ping | PresenceMore | Stop


def check_frame_size(text: str) -> None:
    """Raise ``FrameTooLarge`` if ``text`` is over ``MAX_FRAME_BYTES`` in UTF-8.

    Cheap for ordinary frames: a string of at most a quarter of the limit in characters
    cannot exceed it (UTF-8 takes at most 4 bytes a character), so only long frames are
    encoded to be measured.
    """
    if len(text) * 4 <= MAX_FRAME_BYTES:
        return
    if len(text) > MAX_FRAME_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_FRAME_BYTES:
        raise FrameTooLarge(f"frames are limited to {MAX_FRAME_BYTES} bytes")


def parse_frame(text: str) -> Request:
    """Turn a client text frame into a request, or raise ``ProtocolError``.

    The caller checks the size first (``check_frame_size``).
    """
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise ProtocolError(INVALID, "The frame is not valid JSON.") from None
    if not isinstance(data, dict):
        raise ProtocolError(INVALID, "A frame must be a JSON object.")
    kind = data.get("type")
    if not isinstance(kind, str):
        raise ProtocolError(INVALID, 'A frame needs a string "type".')
    parser = _PARSERS.get(kind)
    if parser is None:
        raise ProtocolError(INVALID, f"Unknown frame type {kind[:50]!r}.")
    return parser(data)


def _parse_send(data: dict) -> Send:
    raw_client_id = data.get("client_id")
    # Echoed in the error only when it is a string of sane length that UTF-8 can carry: it
    # came from the client, and a lone surrogate ("\ud800" in JSON) would make the error
    # frame itself unsendable.
    echo = (
        raw_client_id
        if isinstance(raw_client_id, str)
        and len(raw_client_id) <= 64
        and is_encodable(raw_client_id)
        else None
    )
    if not isinstance(raw_client_id, str):
        raise ProtocolError(INVALID, '"client_id" must be a UUID string.', client_id=echo)
    try:
        client_id = str(uuid.UUID(raw_client_id))
    except ValueError:
        raise ProtocolError(INVALID, '"client_id" must be a UUID string.', client_id=echo) from None
    body = data.get("body")
    if not isinstance(body, str):
        raise ProtocolError(INVALID, '"body" must be a string.', client_id=echo)
    return Send(client_id=client_id, body=body)


def _parse_history(data: dict) -> History:
    before = _id_field(data, "before", minimum=1)
    limit = data.get("limit")
    if not _is_int(limit) or not 1 <= limit <= HISTORY_MAX_LIMIT:
        raise ProtocolError(INVALID, f'"limit" must be an integer from 1 to {HISTORY_MAX_LIMIT}.')
    return History(before=before, limit=limit)


def _parse_resume(data: dict) -> Resume:
    return Resume(after=_id_field(data, "after", minimum=0))


def _parse_read(data: dict) -> Read:
    return Read(up_to=_id_field(data, "up_to", minimum=0))


def _parse_presence_more(data: dict) -> PresenceMore:
    after = data.get("after")
    if (
        not isinstance(after, str)
        or not 0 < len(after) <= MAX_NAME_LENGTH
        or not is_encodable(after)
    ):
        raise ProtocolError(INVALID, f'"after" must be a name of 1 to {MAX_NAME_LENGTH} characters')
    return PresenceMore(after=after)


def _parse_stop(data: dict) -> Stop:
    position = data.get("position")
    if position is not None and (not _is_int(position) or not 0 <= position <= MAX_POSITION):
        raise ProtocolError(INVALID, '"position" must be a non-negative integer or null.')
    return Stop(id=_id_field(data, "id", minimum=1), position=position)


def _id_field(data: dict, name: str, *, minimum: int) -> int:
    value = data.get(name)
    if not _is_int(value) or not minimum <= value <= MAX_ID:
        raise ProtocolError(INVALID, f'"{name}" must be a message id (an integer >= {minimum}).')
    return value


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_PARSERS = {
    "message.send": _parse_send,
    "typing": lambda data: Typing(),
    "history": _parse_history,
    "resume": _parse_resume,
    "read": _parse_read,
    "ping": lambda data: Ping(),
    "presence.more": _parse_presence_more,
    "message.stop": _parse_stop,
}


# Server frames ----------------------------------------------------------------------------


def encode(frame: dict) -> str:
    """A server frame as compact JSON text (non-ASCII kept as is: frames are UTF-8)."""
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False)


PONG = encode({"type": "pong"})


def error_frame(error: ProtocolError) -> str:
    """The ``error`` frame for a refusal, in ASCII JSON.

    ASCII (non-ASCII as ``\\u`` escapes, which clients decode alike): a detail quoting
    what the client sent can always be written, even a lone surrogate.
    """
    frame = {"type": "error", "code": error.code, "detail": error.detail}
    if error.client_id is not None:
        frame["client_id"] = error.client_id
    if error.retry_after is not None:
        frame["retry_after"] = round(error.retry_after, 3)
    return json.dumps(frame, separators=(",", ":"))


def ack_frame(client_id: str, message_id: int) -> str:
    return encode({"type": "ack", "client_id": client_id, "id": message_id})


def assistant_unavailable_frame(client_id: str, message_id: int, detail: str) -> str:
    """After the ``ack`` of a message that asked the assistant, which will not answer it."""
    return encode(
        {
            "type": "error",
            "code": ASSISTANT_UNAVAILABLE,
            "detail": detail,
            "client_id": client_id,
            "id": message_id,
        }
    )


def delta_frame(message_id: int, position: int, text: str) -> str:
    """``text`` of the assistant's answer in message ``message_id``, ending at ``position``."""
    return encode({"type": "message.delta", "id": message_id, "position": position, "text": text})


def done_frame(message_id: int, status: str, position: int, error: str | None) -> str:
    """The assistant's answer in message ``message_id`` ended: its status and final length."""
    return encode(
        {
            "type": "message.done",
            "id": message_id,
            "status": status,
            "position": position,
            "error": error or None,
        }
    )


def presence_frame(online: list[str], count: int, more: bool, version: int) -> str:
    """The first page of who is online (on connect and resync): replaces what is known."""
    return encode(
        {"type": "presence", "online": online, "count": count, "more": more, "version": version}
    )


def presence_page_frame(after: str, page) -> str:
    """The names after ``after`` (a ``chat.presence.PresencePage``), for ``presence.more``."""
    return encode(
        {
            "type": "presence.page",
            "after": after,
            "online": page.online,
            "count": page.count,
            "more": page.more,
            "version": page.version,
        }
    )


def presence_delta_frame(joined: list[str], left: list[str], count: int, version: int) -> str:
    """Who came online and who went offline; the count and version after the change."""
    frame = {"type": "presence.delta", "joined": joined, "left": left, "count": count}
    frame["version"] = version
    return encode(frame)


def history_frame(messages: list[dict], has_more: bool) -> str:
    return encode({"type": "history", "messages": messages, "has_more": has_more})


def message_frame(payload: dict) -> str:
    return encode({"type": "message", "message": payload})


def event_frame(event: dict) -> str | None:
    """The frame every socket of the room gets for a hub event, cached on the event.

    The hub hands the same event object to each local subscriber, so the JSON is built once
    per event and process, not once per socket. None for events that are not forwarded
    as frames (removals and logouts close sockets; presence is per socket, see
    ``chat.outbox``).
    """
    frame = event.get("_frame", False)
    if frame is False:
        kind = event.get("kind")
        if kind == "message":
            frame = message_frame(event["message"])
        elif kind == "message.deleted":
            frame = encode({"type": "message.deleted", "id": event["id"]})
        elif kind == "typing":
            frame = encode({"type": "typing", "user": event["user"]})
        elif kind == "assistant.delta":
            frame = delta_frame(event["message"], event["position"], event["text"])
        elif kind == "assistant.done":
            frame = done_frame(event["message"], event["status"], event["position"], event["error"])
        else:
            frame = None
        event["_frame"] = frame
    return frame


def websocket_send(text: str) -> dict:
    """The ASGI message that sends ``text`` as one text frame."""
    return {"type": "websocket.send", "text": text}


def event_send(event: dict) -> dict:
    """``websocket_send(event_frame(event))``, built once per event and shared by sockets.

    Servers only read the message, so one dict serves every socket of the room.
    """
    message = event.get("_send")
    if message is None:
        message = event["_send"] = websocket_send(event_frame(event))
    return message


def shared_frame_bytes(event: dict, message: dict) -> bytes | None:
    """The bytes on the wire of ``message`` when it is the frame every socket of the room
    gets for ``event`` (its ``event_send``, or its presence delta's shared frame), for
    ``FrameWriter``: built once per event and written as they are to every plain socket.
    None for a message of one socket's own (a delta cut to an older snapshot)."""
    cached = event.get("_frame_bytes")
    if cached is not None and cached[0] is message:
        return cached[1]
    accepted = event.get("_accepted")
    if message is not event.get("_send") and (accepted is None or message is not accepted.send):
        return None
    frame = text_frame(message["text"])
    event["_frame_bytes"] = (message, frame)
    return frame
