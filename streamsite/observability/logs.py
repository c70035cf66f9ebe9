"""Structured logs: ``LOG_FORMAT=json``, request ids, and connection lifecycle lines.

``LOG_FORMAT=json`` writes one JSON object per line: ``time`` (ISO 8601, UTC), ``level``,
``logger``, ``message``, ``request_id``, ``user_id``, any ``extra`` fields, and
``exception`` (the formatted traceback) when there is one. The default, ``text``, stays the
readable ``LEVEL logger: message``.

python-json-logger rather than structlog: every log call here (and Django's, uvicorn's,
Channels') is a plain ``logging`` call, and python-json-logger is only a ``Formatter``
that plugs into the stdlib configuration (``LOGGING``, uvicorn's ``--log-config``) with
no second pipeline of processors to keep in step with it. It is small and well kept.

This module imports nothing from Django at import time: uvicorn's supervisor process
loads ``JsonFormatter`` from ``uvicorn_log_config.json`` before any settings exist.

Request ids: ``RequestIdMiddleware`` (ASGI, around the whole application, HTTP and
WebSocket alike) takes a sane incoming ``X-Request-ID`` or makes one, keeps it in a
context variable for every record logged while serving it, and returns it as a response
header (on a WebSocket, a header of the handshake's answer).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import random
import re
import time

from pythonjsonlogger.json import JsonFormatter as _BaseJsonFormatter

#: The request (or socket) being served, and its user once known: for every log record.
request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)
user_id_var: contextvars.ContextVar[int | None] = contextvars.ContextVar("user_id", default=None)

#: What an incoming ``X-Request-ID`` may be (a proxy's UUID, a hex id): anything else is
#: replaced, so a client cannot put spaces, quotes or control characters in our logs.
_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._\-]{1,64}")
REQUEST_ID_HEADER = b"x-request-id"

#: The one logger of connection lifecycle lines (``connection_event``).
connections_logger = logging.getLogger("streamsite.connections")


class ContextFilter(logging.Filter):
    """Put the current ``request_id`` and ``user_id`` on every record (None outside one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get()
        if not hasattr(record, "user_id"):
            record.user_id = user_id_var.get()
        return True


class JsonFormatter(_BaseJsonFormatter):
    """python-json-logger with streamsite's field names (see the module docstring)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("fmt", ["levelname", "name", "message", "request_id", "user_id"])
        kwargs.setdefault(
            "rename_fields",
            {"levelname": "level", "name": "logger", "exc_info": "exception"},
        )
        kwargs.setdefault("timestamp", "time")
        # uvicorn's formatters take this; it means nothing here.
        kwargs.pop("use_colors", None)
        super().__init__(*args, **kwargs)

    def add_fields(self, log_data, record, message_dict) -> None:
        super().add_fields(log_data, record, message_dict)
        # uvicorn's own records carry ``color_message`` (ANSI codes): not for JSON.
        log_data.pop("color_message", None)


def logging_config(log_format: str, loggers: tuple[str, ...]) -> dict:
    """Return the ``LOGGING`` dict for ``text`` or ``json``.

    In JSON mode uvicorn's loggers are configured too (Django sets logging up in each
    worker after uvicorn did): their lines are JSON like the rest. ``uvicorn.access`` is
    left alone; ``manage.py serve`` runs with ``--no-access-log``.
    """
    json_mode = log_format == "json"
    formatter = "json" if json_mode else "plain"
    config: dict = {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": ContextFilter}},
        "formatters": {
            "plain": {"format": "{levelname} {name}: {message}", "style": "{"},
            "json": {"()": JsonFormatter},
        },
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": formatter,
                "filters": ["context"],
            },
            # Counts ERROR+ records for ``streamsite_log_errors_total``, whichever logger
            # wrote them (and keeps Python's last-resort output for records no other
            # handler takes: streamsite.observability.logcount).
            "error_count": {
                "class": "streamsite.observability.logcount.ErrorCountHandler",
                "level": "WARNING",
            },
        },
        "loggers": {
            name: {"handlers": ["console", "error_count"], "level": "INFO", "propagate": False}
            for name in loggers
        },
        "root": {"handlers": ["error_count"], "level": "WARNING"},
    }
    if json_mode:
        # Django's own (request errors, "Bad Request" warnings) and the rest of the root.
        config["root"] = {"handlers": ["console", "error_count"], "level": "WARNING"}
        for name in ("django", "uvicorn", "daphne"):
            config["loggers"][name] = {
                "handlers": ["console", "error_count"],
                "level": "INFO",
                "propagate": False,
            }
    return config


def clean_request_id(value: str | None) -> str:
    """Return ``value`` when it is a short id of safe characters; else a new id."""
    if value and _SAFE_REQUEST_ID.fullmatch(value):
        return value
    return new_request_id()


#: ``new_request_id``'s generator: seeded from ``os.urandom``, again in a forked child.
_request_ids = random.Random()  # noqa: S311 (ids are no secret: see new_request_id)
os.register_at_fork(after_in_child=_request_ids.seed)


def new_request_id() -> str:
    """32 hex digits from ``random``'s generator: no system call on the event loop.

    Not ``uuid.uuid4()``: it reads ``os.urandom``, whose ``getrandom`` call releases the
    GIL, and on a server whose database threads are waiting for the GIL the event loop then
    waits for one of them to give it back. For each request and WebSocket that was 9 % of
    the event loop's samples while 10,000 sockets joined a room, and removing it took the
    joins from 439-464 a second to 497-515 (docs/benchmarks.md, 2026-12-03 night). A
    request id only correlates log lines (it is no secret and grants nothing), so a
    Mersenne Twister seeded from ``os.urandom`` is enough. A generator of its own, so that
    code seeding ``random``'s global one cannot make two workers repeat each other's ids,
    re-seeded in a forked child for the same reason.
    """
    return f"{_request_ids.getrandbits(128):032x}"


def bind_user(user_id: int | None) -> None:
    """Record the user being served, for this request's or socket's later log records."""
    user_id_var.set(user_id)


#: Where ``RequestIdMiddleware`` leaves a WebSocket's request id for its consumer.
REQUEST_ID_SCOPE_KEY = "streamsite.request_id"


def accept_headers(scope: dict) -> list[tuple[bytes, bytes]]:
    """The headers a consumer accepts a WebSocket with: its ``X-Request-ID``."""
    request_id = scope.get(REQUEST_ID_SCOPE_KEY)
    return [(REQUEST_ID_HEADER, request_id.encode())] if request_id else []


class RequestIdMiddleware:
    """ASGI middleware: a request id per HTTP request and per WebSocket, in logs and headers.

    Around the whole ``ProtocolTypeRouter``, so Django views and Channels consumers (which
    run in tasks and threads that copy the context) see the same id.
    """

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        incoming = None
        for name, value in scope.get("headers", ()):
            if name == REQUEST_ID_HEADER:
                incoming = value.decode("latin-1")
                break
        request_id = clean_request_id(incoming)
        header = (REQUEST_ID_HEADER, request_id.encode())
        if scope["type"] == "http":

            async def send_with_id(message):
                if message["type"] == "http.response.start":
                    message = {**message, "headers": [*message.get("headers", ()), header]}
                await send(message)

        else:
            # A socket's ``send`` is left as the server's: the chat writes frames through it
            # directly and tells daphne's from uvicorn's by it (streamsite/websocket.py). Its
            # consumers add the header when they accept (``accept_headers``).
            send_with_id = send
            scope = {**scope, REQUEST_ID_SCOPE_KEY: request_id}

        request_token = request_id_var.set(request_id)
        user_token = user_id_var.set(None)
        try:
            return await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(request_token)
            user_id_var.reset(user_token)


class WebSocketUserMiddleware:
    """Channels middleware inside ``SocketAuthMiddleware``: bind the socket's user id (it
    has loaded ``scope["user"]`` by then, so reading its id costs nothing)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        user = scope.get("user")
        if user is not None and getattr(user, "is_authenticated", False):
            bind_user(user.pk)
        return await self.app(scope, receive, send)


def connection_event(kind: str, event: str, *, started: float | None = None, **fields) -> None:
    """Log one connection lifecycle line, the one shape for every stream and socket.

    ``kind`` names the connection (``notifications stream``, ``chat socket``...), ``event``
    is ``opened`` or ``closed``; ``started`` (a ``time.monotonic()`` reading) adds
    ``duration_seconds``; other fields (``reason``, ``code``) are added as given. Text
    logs read ``chat socket closed (code=1000, duration_seconds=12.3)``; JSON logs carry
    ``connection``, ``event`` and each field.
    """
    if started is not None:
        fields["duration_seconds"] = round(time.monotonic() - started, 3)
    detail = ", ".join(f"{key}={value}" for key, value in fields.items())
    connections_logger.info(
        "%s %s%s",
        kind,
        event,
        f" ({detail})" if detail else "",
        extra={"connection": kind, "event": event, **fields},
    )


async def logged_stream(kind: str, chunks, *, user_id: int | None = None):
    """Yield ``chunks`` (a streamed response's body), logging its opening and closing.

    The reason on closing: ``server shutdown`` when the hub is ending streams,
    ``client left`` when the server cancelled the body (the client went away), ``error``
    when the body raised, else ``ended`` (the stream finished: a slow client cut off, an
    answer complete, an export written).
    """
    from streamsite.streaming.hub import get_hub  # not at import: see the module docstring

    if user_id is not None:
        bind_user(user_id)
    started = time.monotonic()
    connection_event(kind, "opened")
    reason = "ended"
    try:
        async for chunk in chunks:
            yield chunk
    except (GeneratorExit, asyncio.CancelledError):
        reason = "client left"
        raise
    except Exception:
        reason = "error"
        raise
    finally:
        if get_hub().ending:
            reason = "server shutdown"
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()
        connection_event(kind, "closed", started=started, reason=reason)
