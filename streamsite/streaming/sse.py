"""Encode Server-Sent Events (https://html.spec.whatwg.org/multipage/server-sent-events.html).

A field value must not contain a line break (CR, LF or CRLF ends a line, a blank line ends
an event), and an ``id`` containing NUL is ignored by browsers: so no value, whatever a user
typed, can inject a field or an event. Multi-line data is sent as one ``data:`` line per
line, which the browser joins with LF again.
"""

import json
import re

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_FIELD_UNSAFE = re.compile(r"[\r\n\x00]")

KEEPALIVE = b": keepalive\n\n"
# One encoder, built once: json.dumps(..., separators=...) builds a new one on every call.
_to_json = json.JSONEncoder(separators=(",", ":")).encode


def clean_field(value: str) -> str:
    """Return ``value`` fit for a one-line field (``event``, ``id``): CR, LF, NUL removed."""
    return _FIELD_UNSAFE.sub("", value)


def encode_event(data: str, *, event: str | None = None, id: str | int | None = None) -> bytes:
    """Return one event: optional ``event`` and ``id`` fields, then ``data`` line by line."""
    parts = []
    if event is not None:
        parts.append(f"event: {clean_field(event)}\n")
    if id is not None:
        parts.append(f"id: {clean_field(str(id))}\n")
    for line in _LINE_BREAK.split(data.replace("\x00", "\ufffd")):
        parts.append(f"data: {line}\n")
    parts.append("\n")
    return "".join(parts).encode()


def encode_json_event(payload, *, event: str, id: int | None = None) -> bytes:
    """Return an event whose data is ``payload`` as JSON.

    ``json.dumps`` escapes every control character, so its output is one safe line and
    needs no splitting: this is the per-event hot path.
    """
    data = _to_json(payload)
    if id is None:
        return f"event: {event}\ndata: {data}\n\n".encode()
    return f"event: {event}\nid: {int(id)}\ndata: {data}\n\n".encode()


def encode_json_object(payload: dict) -> bytes:
    """Return ``payload`` as the compact JSON ``encode_json_event`` puts in ``data``."""
    return _to_json(payload).encode()


def encode_retry(milliseconds: int) -> bytes:
    """Return the ``retry`` field: how long the browser waits before reconnecting."""
    return f"retry: {int(milliseconds)}\n\n".encode()


def encode_comment(text: str) -> bytes:
    """Return a comment line (ignored by browsers; keeps proxies and idle sockets alive)."""
    return f": {clean_field(text)}\n\n".encode()
