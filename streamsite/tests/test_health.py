"""``/healthz`` and ``/readyz``: answers, headers, and 503 naming what is down.

The outage tests run live servers against a redis-server of the test's own (stopped and
started again) and a database address nothing listens on: real failures, not mocks.
"""

import socket
import time

import httpx
import pytest

from streamsite.observability.health import CHECK_TIMEOUT_SECONDS


def test_healthz_answers_ok_uncached(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.content == b"ok\n"
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert response["Cache-Control"] == "no-store"
    assert "Set-Cookie" not in response  # no session, no CSRF cookie


@pytest.mark.django_db(transaction=True)
def test_readyz_answers_ready_when_everything_answers(client):
    response = client.get("/readyz")
    assert response.status_code == 200, response.content
    assert response.content == b"ready\n"
    assert response["Cache-Control"] == "no-store"
    assert "Set-Cookie" not in response


def test_health_endpoints_refuse_posts(client):
    assert client.post("/healthz").status_code == 405
    assert client.post("/readyz").status_code == 405


def ready_status(server) -> httpx.Response:
    return httpx.get(f"{server.url}/readyz", timeout=CHECK_TIMEOUT_SECONDS + 5)


def wait_for_status(server, status: int, within: float = 15) -> httpx.Response:
    """Poll ``/readyz`` until it answers ``status`` (a restarted Redis takes a moment)."""
    deadline = time.monotonic() + within
    while True:
        response = ready_status(server)
        if response.status_code == status or time.monotonic() > deadline:
            return response
        time.sleep(0.1)  # the next poll, as an orchestrator's would be


@pytest.mark.live_server
@pytest.mark.timeout(90)
def test_readyz_goes_503_while_redis_is_down_and_back_to_200(live_server_factory, private_redis):
    server = live_server_factory("uvicorn", REDIS_URL=private_redis.url)
    assert ready_status(server).status_code == 200
    private_redis.stop()
    try:
        response = ready_status(server)
        assert response.status_code == 503
        assert response.text == "not ready: redis not answering\n"
        assert response.headers["cache-control"] == "no-store"
        assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200
    finally:
        private_redis.start()
    response = wait_for_status(server, 200)
    assert response.status_code == 200, response.text
    log = server.log_path.read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed on return: nothing listens there


@pytest.mark.live_server
@pytest.mark.timeout(60)
def test_readyz_goes_503_when_the_database_is_unreachable(live_server_factory):
    # PostgreSQL's address with nothing listening: every connection attempt is refused.
    dead = f"postgres://postgres@127.0.0.1:{unused_port()}/streamsite"
    server = live_server_factory("daphne", DATABASE_URL=dead)
    response = ready_status(server)
    assert response.status_code == 503
    assert response.text == "not ready: database not answering\n"
    assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200
    log = server.log_path.read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]
