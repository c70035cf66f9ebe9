"""Structured logs: request ids, and LOG_FORMAT=json from a live production server."""

import json
import logging
import os
import random
import re
import sys
import time

import httpx
import pytest
from asgiref.sync import sync_to_async

from streamsite.observability.logs import JsonFormatter, clean_request_id, new_request_id
from streamsite.testing.live_server import session_cookies

FIELDS = {"time", "level", "logger", "message", "request_id", "user_id"}


@pytest.mark.parametrize("value", ["abc-123", "0f" * 16, "a.b_c-d"])
def test_a_sane_request_id_is_kept(value):
    assert clean_request_id(value) == value


@pytest.mark.parametrize("value", [None, "", "x" * 65, "has space", 'quote"', "line\nbreak"])
def test_an_unsafe_request_id_is_replaced(value):
    replaced = clean_request_id(value)
    assert replaced != value and len(replaced) == 32


def test_a_new_request_id_makes_no_system_call(monkeypatch):
    """``os.urandom`` releases the GIL: on the event loop, a wait for the database threads."""

    def urandom(size):
        raise AssertionError("os.urandom called for a request id")

    monkeypatch.setattr(os, "urandom", urandom)
    ids = {clean_request_id(None) for _ in range(10_000)}
    assert len(ids) == 10_000
    assert all(re.fullmatch(r"[0-9a-f]{32}", request_id) for request_id in ids)


def test_seeding_the_global_generator_does_not_repeat_request_ids():
    """Code that seeds ``random`` (a library, a test) must not make workers' ids repeat."""
    state = random.getstate()
    try:
        random.seed(1)
        first = new_request_id()
        random.seed(1)
        assert new_request_id() != first
    finally:
        random.setstate(state)


def test_a_forked_worker_makes_other_ids_than_its_parent():
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next id, then out without pytest's teardown
        os.write(write, new_request_id().encode())
        os._exit(0)
    os.close(write)
    try:
        child_id = os.read(read, 64).decode()
    finally:
        os.close(read)
        os.waitpid(pid, 0)
    assert len(child_id) == 32 and child_id != new_request_id()


def test_json_formatter_carries_the_fields_and_the_exception():
    record = logging.LogRecord("chat", logging.ERROR, __file__, 1, "failed %s", ("x",), None)
    try:
        raise ValueError("boom")
    except ValueError:
        record.exc_info = sys.exc_info()
    record.request_id, record.user_id, record.room = "rid", 7, "lobby"
    line = json.loads(JsonFormatter().format(record))
    assert line.keys() >= FIELDS
    assert (line["level"], line["logger"], line["message"]) == ("ERROR", "chat", "failed x")
    assert (line["request_id"], line["user_id"], line["room"]) == ("rid", 7, "lobby")
    assert line["time"].endswith("+00:00")
    assert "ValueError: boom" in line["exception"]


def json_lines(server) -> list[dict]:
    """Every line the server logged, each parsed as JSON (fails on one that is not)."""
    lines = []
    for text in server.log_path.read_text(errors="replace").splitlines():
        if text.strip():
            try:
                lines.append(json.loads(text))
            except ValueError:
                raise AssertionError(f"not a JSON line: {text!r}") from None
    return lines


def wait_for_line(server, predicate, within: float = 15) -> dict:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        found = [line for line in json_lines(server) if predicate(line)]
        if found:
            return found[0]
        time.sleep(0.05)  # the server writes the line as it closes the stream
    raise AssertionError(f"no such line in {json_lines(server)[-10:]}")


@pytest.mark.live_server
@pytest.mark.timeout(90)
async def test_json_logs_from_a_live_server(live_server_factory, make_user):
    server = await sync_to_async(live_server_factory)("uvicorn", LOG_FORMAT="json")
    user = await sync_to_async(make_user)("reader")
    cookies = await sync_to_async(session_cookies)(user)
    async with httpx.AsyncClient(base_url=server.url, cookies=cookies, timeout=10) as http:
        response = await http.get("/healthz", headers={"X-Request-ID": "probe-1"})
        assert response.headers["x-request-id"] == "probe-1"
        response = await http.get("/healthz", headers={"X-Request-ID": "bad id"})
        assert len(response.headers["x-request-id"]) == 32
        async with http.stream(
            "GET", "/notifications/stream/", headers={"X-Request-ID": "stream-1"}
        ) as stream:
            assert stream.status_code == 200
            assert stream.headers["x-request-id"] == "stream-1"
            await anext(stream.aiter_bytes())  # the stream is open
    closed = await sync_to_async(wait_for_line)(
        server, lambda line: line.get("connection") == "notifications stream"
        and line.get("event") == "closed"
    )  # fmt: skip
    assert closed["level"] == "INFO" and closed["logger"] == "streamsite.connections"
    assert (closed["request_id"], closed["user_id"]) == ("stream-1", user.pk)
    assert closed["reason"] == "client left" and closed["duration_seconds"] >= 0
    lines = json_lines(server)
    for line in lines:
        assert line.keys() >= FIELDS, line
    assert any(line["logger"].startswith("uvicorn") for line in lines), lines
    opened = [line for line in lines if line.get("event") == "opened"]
    assert opened and opened[0]["request_id"] == "stream-1"


async def test_a_sockets_send_reaches_the_app_unwrapped():
    """The chat writes frames with the server's own ``send`` and tells daphne's from
    uvicorn's by it (streamsite/websocket.py): the request-id middleware must not wrap it
    for WebSockets. HTTP responses get the header through a wrapper."""
    from streamsite.observability.logs import REQUEST_ID_SCOPE_KEY, RequestIdMiddleware

    seen = {}

    async def app(scope, receive, send):
        seen[scope["type"]] = (send, scope.get(REQUEST_ID_SCOPE_KEY))

    async def server_send(message):
        pass

    middleware = RequestIdMiddleware(app)
    headers = [(b"x-request-id", b"abc-1")]
    await middleware({"type": "websocket", "headers": headers}, None, server_send)
    await middleware({"type": "http", "headers": headers}, None, server_send)
    assert seen["websocket"] == (server_send, "abc-1")
    assert seen["http"][0] is not server_send
