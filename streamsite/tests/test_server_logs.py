"""What clients make a server log: uvicorn's invalid UTF-8 report, one line, rate-limited;
its per-socket lines, dropped (the application's own connection lines say it)."""

import asyncio
import logging

import pytest
from asgiref.sync import sync_to_async
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from chat.tests.factories import room_with
from streamsite.server_logs import INVALID_UTF8_MESSAGE, ClientFaultFilter, SocketLineFilter
from streamsite.testing.live_server import session_cookies


def invalid_utf8_record() -> logging.LogRecord:
    try:
        b"\xff".decode()
    except UnicodeDecodeError:
        import sys

        exc_info = sys.exc_info()
    return logging.LogRecord(
        "uvicorn.error", logging.ERROR, __file__, 1, INVALID_UTF8_MESSAGE, (), exc_info
    )


def test_invalid_utf8_reports_are_one_line_at_most_once_per_interval():
    now = [0.0]
    log_filter = ClientFaultFilter(interval=60, clock=lambda: now[0])
    first = invalid_utf8_record()
    assert log_filter.filter(first)
    assert (first.levelname, first.exc_info, first.exc_text) == ("WARNING", None, None)
    assert "\n" not in first.getMessage() and "0 more" in first.getMessage()
    assert not any(log_filter.filter(invalid_utf8_record()) for _ in range(500))
    now[0] = 61.0
    later = invalid_utf8_record()
    assert log_filter.filter(later)
    assert "500 more since the last report" in later.getMessage()


def test_other_uvicorn_records_pass_untouched():
    log_filter = ClientFaultFilter()
    record = logging.LogRecord(
        "uvicorn.error", logging.ERROR, __file__, 1, "Exception in ASGI application\n", (), None
    )
    assert log_filter.filter(record)
    assert (record.levelname, record.msg) == ("ERROR", "Exception in ASGI application\n")


def uvicorn_record(level: int, msg: str, *args) -> logging.LogRecord:
    return logging.LogRecord("uvicorn.error", level, __file__, 1, msg, args, None)


def test_the_per_socket_lines_are_dropped_and_the_rest_pass():
    log_filter = SocketLineFilter()
    accepted = uvicorn_record(
        logging.INFO, '%s - "WebSocket %s" [accepted]', "127.0.0.1:5000", "/ws/chat/lobby/"
    )
    assert not log_filter.filter(accepted)
    assert not log_filter.filter(uvicorn_record(logging.INFO, "connection open"))
    assert not log_filter.filter(uvicorn_record(logging.INFO, "connection closed"))
    refused = uvicorn_record(logging.INFO, '%s - "WebSocket %s" 403', "127.0.0.1:5000", "/ws/x/")
    assert log_filter.filter(refused)
    assert log_filter.filter(uvicorn_record(logging.INFO, "Application startup complete."))
    # The same words at another level are not the per-socket line: they pass.
    assert log_filter.filter(uvicorn_record(logging.ERROR, "connection closed"))


@pytest.mark.live_server
async def test_invalid_utf8_text_frames_on_serve_log_one_line_without_a_traceback(
    live_servers, transactional_db, user
):
    """Issue #13: every text frame that was not UTF-8 logged an ERROR with a traceback
    under `serve` (uvicorn's sans-I/O protocol), so any client could flood the log."""
    server = await sync_to_async(live_servers)("uvicorn")
    await sync_to_async(room_with)("lobby")
    cookies = await sync_to_async(session_cookies)(user)
    cookie = "; ".join(f"{k}={v}" for k, v in cookies.items())
    mark = server.log_mark()

    async def send_invalid_utf8() -> int:
        async with ws_connect(
            f"{server.ws_url}/ws/chat/lobby/",
            origin=server.url,
            additional_headers={"Cookie": cookie},
        ) as connection:
            await connection.send(b'{"type": "ping", "x": "\xff\xfe"}', text=True)
            try:
                while True:
                    await asyncio.wait_for(connection.recv(), 10)
            except ConnectionClosed as closed:
                return closed.rcvd.code if closed.rcvd else 1006

    codes = await asyncio.gather(*(send_invalid_utf8() for _ in range(20)))
    assert codes == [1007] * 20  # RFC 6455: invalid frame payload data
    # A round trip on a fresh socket: the server has logged what the frames made it log.
    async with ws_connect(
        f"{server.ws_url}/ws/chat/lobby/", origin=server.url, additional_headers={"Cookie": cookie}
    ) as connection:
        await connection.send('{"type": "ping"}')
        while '"pong"' not in await asyncio.wait_for(connection.recv(), 10):
            pass
    log = server.log_since(mark)
    assert "Traceback" not in log and "ERROR" not in log, log
    reports = [line for line in log.splitlines() if "not UTF-8" in line]
    assert len(reports) <= 1, log
    # Each of the 21 sockets is logged once, by the application; uvicorn's and the
    # websockets library's lines for each were dropped.
    assert log.count("chat socket opened") == 21, log
    assert "[accepted]" not in log and "connection open" not in log, log
