"""The admin's Live page and /admin/live/stream/ on the real servers (both backends)."""

import asyncio
import json
from contextlib import asynccontextmanager

import httpx
import pytest
from asgiref.sync import sync_to_async

from streamsite.testing.live_server import session_cookies
from streamsite.testing.sse import StreamReader

pytestmark = pytest.mark.live_server

STREAM = "/admin/live/stream/"


@asynccontextmanager
async def open_stream(server, user=None):
    """Open the dashboard stream as ``user`` (anonymous if None); yield (response, reader)."""
    cookies = await sync_to_async(session_cookies)(user) if user else {}
    async with (
        httpx.AsyncClient(base_url=server.url, cookies=cookies, timeout=20) as client,
        client.stream("GET", STREAM, headers={"Accept-Encoding": "gzip"}) as response,
    ):
        yield response, StreamReader(response.aiter_raw())


async def next_sample(reader: StreamReader) -> dict:
    event = await reader.next_event(5)
    assert event["event"] == "sample"
    return json.loads(event["data"])


async def test_the_stream_is_for_staff_only(live_server_asgi, user, staff_user):
    for who in (None, user):
        async with open_stream(live_server_asgi, who) as (response, _):
            body = (await response.aread()).decode()
        assert response.status_code == 403, who
        assert body == "Staff only.\n"
    async with open_stream(live_server_asgi, staff_user) as (response, _):
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert "no-cache" in response.headers["cache-control"]
        assert response.headers["x-accel-buffering"] == "no"
        assert "content-encoding" not in response.headers


async def test_one_aggregated_sample_a_second_with_this_server_in_it(live_server_asgi, staff_user):
    loop = asyncio.get_running_loop()
    async with open_stream(live_server_asgi, staff_user) as (_, reader):
        assert await reader.next_chunk() == b"retry: 2000\n\n"
        await next_sample(reader)
        started = loop.time()
        samples = [await next_sample(reader) for _ in range(3)]
        elapsed = loop.time() - started
    # Three ticks of one second each (a loose bound: the machine may be busy).
    assert 2.0 < elapsed < 5.0
    last = samples[-1]
    assert last["total"]["processes"] >= 1
    assert last["total"]["db"] in ("ok", "unknown")  # checked every few seconds
    assert {p["process"] for p in last["processes"]}
    assert len({s["t"] for s in samples}) == 3


async def test_two_workers_both_appear(live_server_factory, private_redis, staff_user):
    """``serve --workers 2`` on a Redis of the test's own: each worker publishes its samples."""
    server = live_server_factory("uvicorn", workers=2, REDIS_URL=private_redis.url)
    async with open_stream(server, staff_user) as (_, reader):
        async with asyncio.timeout(15):
            while True:
                sample = await next_sample(reader)
                if len(sample["processes"]) == 2:
                    break
    assert sample["total"]["processes"] == 2
    assert sample["total"]["redis"] in ("ok", "unknown")
    assert len({p["process"] for p in sample["processes"]}) == 2


@pytest.mark.django_db
def test_the_page_is_for_staff_only(client, user, staff_user):
    """Anonymous and non-staff users get the admin's login page, never the figures."""
    response = client.get("/admin/live/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    client.force_login(user)
    response = client.get("/admin/live/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    client.force_login(staff_user)
    response = client.get("/admin/live/")
    assert response.status_code == 200
    assert b'data-stream-url="/admin/live/stream/"' in response.content
    assert b"js/live.js" in response.content
    assert b'href="/admin/live/"' in client.get("/admin/").content  # linked from the header
