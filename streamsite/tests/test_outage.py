"""An outage of Redis is logged as two warnings, with counts, not a traceback per call."""

import asyncio
import logging

import pytest
import uvloop
from redis.exceptions import ConnectionError as RedisConnectionError

from streamsite.streaming import outage
from streamsite.streaming.outage import Outage, is_connection_error, report_failure


def warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_an_outage_is_one_warning_when_it_starts_and_one_when_it_ends(caplog, monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(outage.time, "monotonic", lambda: clock[0])
    redis = Outage("Redis")
    for _ in range(300):  # every socket and stream of a busy process, at once
        redis.failed("presence reads", RedisConnectionError("Connection refused"))
    redis.failed("rate limit checks", RedisConnectionError("Connection refused"))
    clock[0] += 0.5
    redis.succeeded()  # too soon after the last failure: stale connections still fail
    assert redis.down
    clock[0] += 1.5
    redis.succeeded()
    redis.succeeded()
    assert not redis.down
    assert warnings(caplog) == [
        "Redis is unreachable (ConnectionError: Connection refused, in presence reads); "
        "failures are counted until it is back",
        "Redis is back after 2.0 s; 301 failures meanwhile "
        "(presence reads: 300, rate limit checks: 1)",
    ]
    assert all(r.exc_info is None for r in caplog.records)


def test_a_failure_that_is_not_a_connection_error_keeps_its_traceback(caplog):
    redis = Outage("Redis")
    report_failure(redis, "presence reads", KeyError("bug"), logging.getLogger("t"))
    assert not redis.down
    [record] = caplog.records
    assert record.getMessage() == "presence reads failed"
    assert record.exc_info is not None


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (RedisConnectionError("closed"), True),
        (ConnectionResetError(), True),
        (TimeoutError(), True),
        (ValueError(), False),
    ],
)
def test_what_counts_as_unreachable(error, expected):
    assert is_connection_error(error) is expected


def test_uvloop_s_write_to_a_closed_connection_counts_as_unreachable():
    """uvloop raises RuntimeError for it (redis-py passes it on during a Redis restart):
    a real one, from a real closed connection, not a message copied into the test."""

    async def write_after_close() -> RuntimeError:
        server = await asyncio.start_server(lambda _reader, writer: writer.close(), "127.0.0.1", 0)
        try:
            port = server.sockets[0].getsockname()[1]
            _reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            await writer.wait_closed()  # the connection is lost: its handle is closed
            with pytest.raises(RuntimeError) as raised:
                writer.writelines([b"PING\r\n"])
            return raised.value
        finally:
            server.close()
            await server.wait_closed()

    error = uvloop.run(write_after_close())
    assert is_connection_error(error)
    assert not is_connection_error(RuntimeError("some other bug"))
