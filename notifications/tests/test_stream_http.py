"""GET /notifications/stream/ against the real servers (daphne and the production server)."""

import asyncio
import json
from contextlib import asynccontextmanager

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection
from prometheus_client.parser import text_string_to_metric_families

from notifications import services
from notifications.events import user_key
from streamsite.testing.layers import group_members
from streamsite.testing.live_server import session_cookies
from streamsite.testing.services import database_connection_count, skip_or_fail
from streamsite.testing.sse import StreamReader

pytestmark = pytest.mark.live_server

create = sync_to_async(services.notification_create)


def uses_redis() -> bool:
    return not settings.CHANNEL_LAYERS["default"]["BACKEND"].endswith("InMemoryChannelLayer")


@asynccontextmanager
async def open_stream(server, user=None, *, query: str = "", headers: dict | None = None):
    """Open the stream as ``user`` (anonymous if None); yield (response, reader)."""
    cookies = await sync_to_async(session_cookies)(user) if user else {}
    async with (
        httpx.AsyncClient(base_url=server.url, cookies=cookies, timeout=20) as client,
        client.stream("GET", f"/notifications/stream/{query}", headers=headers or {}) as response,
    ):
        yield response, StreamReader(response.aiter_raw())


async def test_headers_and_first_events(live_server_asgi, user):
    await create(recipient=user, title="waiting")
    async with open_stream(live_server_asgi, user, headers={"Accept-Encoding": "gzip"}) as (
        response,
        reader,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert "no-cache" in response.headers["cache-control"]
        assert response.headers["x-accel-buffering"] == "no"
        assert "content-encoding" not in response.headers
        assert await reader.next_chunk() == b"retry: 2000\n\n"
        assert await reader.next_event() == {"event": "unread", "data": '{"count":1}'}


@pytest.mark.parametrize(
    ("query", "headers", "reason"),
    [
        ("?last_event_id=abc", {}, "last_event_id must be a non-negative integer"),
        ("?last_event_id=-1", {}, "last_event_id must be a non-negative integer"),
        ("?last_event_id=1.5", {}, "last_event_id must be a non-negative integer"),
        ("?last_event_id=%D9%A1%D9%A2", {}, "last_event_id must be a non-negative integer"),
        ("?last_event_id=99999999999999999999", {}, "last_event_id must be a non-negative"),
        ("", {"Last-Event-ID": "1e3"}, "Last-Event-ID must be a non-negative integer"),
        ("", {"Last-Event-ID": "0x7"}, "Last-Event-ID must be a non-negative integer"),
    ],
)
async def test_bad_event_ids_get_a_400_with_a_reason(
    live_server_asgi, user, query, headers, reason
):
    async with open_stream(live_server_asgi, user, query=query, headers=headers) as (response, _):
        body = (await response.aread()).decode()
    assert response.status_code == 400
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert reason in body and len(body) < 100


async def test_anonymous_gets_403_not_a_login_redirect(live_server_asgi, db):
    async with open_stream(live_server_asgi) as (response, _):
        body = (await response.aread()).decode()
    assert response.status_code == 403
    assert "location" not in response.headers
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert body == "Log in to receive notifications.\n"


async def test_post_is_not_allowed(live_server_asgi, user):
    cookies = await sync_to_async(session_cookies)(user)
    async with httpx.AsyncClient(base_url=live_server_asgi.url, cookies=cookies) as client:
        response = await client.post("/notifications/stream/")
    assert response.status_code in (403, 405)  # CSRF refuses it first, or the method check


async def test_last_event_id_header_wins_over_the_query(live_server_asgi, user):
    """The browser reconnects with its latest id in the header while the URL keeps the id
    its page was rendered with: the header is the truth."""
    first, second, third = [await create(recipient=user, title=f"n{n}") for n in range(3)]
    async with open_stream(
        live_server_asgi,
        user,
        query=f"?last_event_id={first.pk}",
        headers={"Last-Event-ID": str(second.pk)},
    ) as (_, reader):
        await reader.until(lambda e: e["event"] == "unread")
    assert reader.notification_ids() == [third.pk]


async def test_replays_every_field_intact(live_server_asgi, user):
    tricky = await create(
        recipient=user,
        title="<img src=x onerror=alert(1)> \u2028 ok",
        body="line 1\nline 2\r\n\nevent: forged\ndata: x",
        url="/notifications/",
        level="error",
    )
    async with open_stream(live_server_asgi, user, query="?last_event_id=0") as (_, reader):
        event = await reader.until(lambda e: e["event"] == "notification")
    assert event["id"] == str(tricky.pk)
    assert json.loads(event["data"]) == tricky.as_event()


async def test_live_delivery_across_processes(live_server_factory, user):
    """A notification created in this process reaches streams served by two other
    processes through Redis."""
    if not uses_redis():
        skip_or_fail("cross-process delivery needs REDIS_URL")
    first, second = live_server_factory("daphne"), live_server_factory("uvicorn")
    async with (
        open_stream(first, user) as (_, reader_a),
        open_stream(second, user) as (_, reader_b),
    ):
        await reader_a.until(lambda e: e["event"] == "unread")
        await reader_b.until(lambda e: e["event"] == "unread")
        created = await create(recipient=user, title="everywhere")
        for reader in (reader_a, reader_b):
            event = await reader.until(lambda e: e["event"] == "notification")
            assert event["id"] == str(created.pk)


async def test_disconnect_releases_the_servers_membership(live_server_asgi, user, channel_layer):
    if not uses_redis():
        skip_or_fail("the server's group memberships are visible only in Redis")
    key = user_key(user.pk)
    async with open_stream(live_server_asgi, user) as (_, reader):
        await reader.until(lambda e: e["event"] == "unread")
        assert len(await group_members(channel_layer, key)) == 1
    async with asyncio.timeout(10):
        while await group_members(channel_layer, key):  # noqa: ASYNC110 - another process
            await asyncio.sleep(0.05)


async def test_idle_streams_hold_no_database_connections(live_server_factory, make_user):
    """200 open streams on PostgreSQL: the server's connections stay few."""
    if connection.vendor != "postgresql":
        skip_or_fail("counting connections needs PostgreSQL (pg_stat_activity)")
    server = live_server_factory("uvicorn")
    users = await sync_to_async(lambda: [make_user(f"idle{n}") for n in range(200)])()
    connections_now = sync_to_async(database_connection_count)
    before = await connections_now()
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(base_url=server.url, timeout=30, limits=limits) as client:
        streams, readers = [], []
        for member in users:
            cookies = await sync_to_async(session_cookies)(member)
            request = client.build_request("GET", "/notifications/stream/", cookies=cookies)
            response = await client.send(request, stream=True)
            streams.append(response)
            readers.append(StreamReader(response.aiter_raw()))
        try:
            await asyncio.gather(
                *(reader.until(lambda e: e["event"] == "unread") for reader in readers)
            )
            during = await connections_now()
        finally:
            for response in streams:
                await response.aclose()
    assert during - before <= 5, f"{during - before} connections for 200 idle streams"


async def notify_from_another_process(redis_url: str, username: str, title: str) -> str:
    """Run ``manage.py notify`` as its own process on the test database and ``redis_url``."""
    import os
    import sys

    from streamsite.testing.live_server import database_url_for_tests

    env = {**os.environ, "DATABASE_URL": database_url_for_tests(), "REDIS_URL": redis_url}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "manage.py", "notify", "--user", username, "--title", title,
        cwd=settings.BASE_DIR, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return out.decode()


async def test_stream_survives_a_redis_restart(live_server_factory, private_redis, user):
    """Redis dies and comes back empty; a notification sent meanwhile from another process
    still reaches the open stream (live, or re-read from the database on resync)."""
    server = live_server_factory(
        "uvicorn", REDIS_URL=private_redis.url, STREAM_HUB_HEARTBEAT_SECONDS="1"
    )
    async with open_stream(server, user) as (_, reader):
        await reader.until(lambda e: e["event"] == "unread")
        private_redis.restart()
        await notify_from_another_process(private_redis.url, user.username, "after restart")
        event = await reader.until(lambda e: e["event"] == "notification", seconds=30)
    assert json.loads(event["data"])["title"] == "after restart"


async def test_logging_out_ends_the_stream(live_server_asgi, user):
    """Logout in the same browser (same session cookie) ends its stream; the reconnect
    that follows is refused, so EventSource stops."""
    cookies = await sync_to_async(session_cookies)(user)
    async with httpx.AsyncClient(base_url=live_server_asgi.url, cookies=cookies) as client:
        async with client.stream("GET", "/notifications/stream/") as response:
            reader = StreamReader(response.aiter_raw())
            await reader.until(lambda e: e["event"] == "unread")
            login_page = await client.get("/")
            token = login_page.text.split('name="csrfmiddlewaretoken" value="', 1)[1].split('"')[0]
            logout = await client.post("/accounts/logout/", data={"csrfmiddlewaretoken": token})
            assert logout.status_code == 302
            await reader.until_end()
        again = await client.get("/notifications/stream/")
    assert again.status_code == 403


async def direct_writes(server, staff) -> float:
    """The server's count of writes its hub made straight to waiting streams."""
    cookies = await sync_to_async(session_cookies)(staff)
    async with httpx.AsyncClient(base_url=server.url, cookies=cookies, timeout=20) as client:
        page = await client.get("/metrics")
    page.raise_for_status()
    for family in text_string_to_metric_families(page.text):
        for sample in family.samples:
            if sample.name == "streamsite_direct_writes_total":
                return sample.value
    return 0.0


async def test_uvicorn_writes_live_notifications_without_waking_the_stream(
    live_server_asgi, user, make_user
):
    """The production server's hub writes to a waiting stream (``DirectDelivery``); under
    daphne (runserver) every event goes through the stream's generator."""
    if not uses_redis():
        skip_or_fail("live delivery from this process to the server's needs REDIS_URL")
    staff = await sync_to_async(make_user)("operator", is_staff=True)
    before = await direct_writes(live_server_asgi, staff)
    async with open_stream(live_server_asgi, user) as (_response, reader):
        await reader.until(lambda e: e["event"] == "unread")
        for n in range(3):  # each after the last arrived: the stream is waiting again
            sent = await create(recipient=user, title=f"live {n}")
            await reader.until(lambda e, pk=sent.pk: e.get("id") == str(pk))
    written = await direct_writes(live_server_asgi, staff) - before
    if live_server_asgi.kind == "uvicorn":
        assert written >= 1
    else:
        assert written == 0
