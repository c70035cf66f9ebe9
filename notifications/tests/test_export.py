"""GET /notifications/export.ndjson: the user's notifications, streamed from the ORM."""

import json

import httpx
import pytest
from asgiref.sync import sync_to_async

from notifications.models import Notification
from notifications.views import export_lines
from streamsite.testing.live_server import session_cookies

pytestmark = pytest.mark.django_db(transaction=True)


def make_rows(user, count, **fields):
    return Notification.objects.bulk_create(
        Notification(recipient=user, title=f"n{n}", **fields) for n in range(count)
    )


@pytest.mark.live_server
def test_exports_only_the_users_notifications_as_ndjson(live_server_asgi, user, other_user):
    mine = make_rows(user, 1203, body="multi\nline")
    make_rows(other_user, 5)
    Notification.objects.filter(pk=mine[0].pk).update(read_at="2026-01-01T00:00:00Z")
    cookies = session_cookies(user)
    response = httpx.get(f"{live_server_asgi.url}/notifications/export.ndjson", cookies=cookies)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-ndjson; charset=utf-8"
    assert "attachment" in response.headers["content-disposition"]
    lines = response.text.splitlines()
    assert len(lines) == 1203 and response.text.endswith("\n")
    rows = [json.loads(line) for line in lines]
    assert [row["id"] for row in rows] == [n.pk for n in mine]
    assert rows[0]["read"] is True and rows[0]["read_at"].startswith("2026-01-01T00:00:00")
    assert rows[1] == {
        **Notification.objects.get(pk=mine[1].pk).as_event(),
        "read_at": None,
    }


@pytest.mark.live_server
def test_export_needs_a_login(live_server_asgi):
    response = httpx.get(f"{live_server_asgi.url}/notifications/export.ndjson")
    assert response.status_code == 403
    assert response.text == "Log in to export your notifications.\n"


async def test_export_lines_are_chunked(user):
    await sync_to_async(make_rows)(user, 1001)
    chunks = [chunk async for chunk in export_lines(user.pk, rows_per_chunk=500)]
    assert [chunk.count(b"\n") for chunk in chunks] == [500, 500, 1]


async def test_empty_export_is_empty(user):
    assert [chunk async for chunk in export_lines(user.pk)] == []


async def test_an_export_bounded_when_it_began_leaves_out_later_notifications(user):
    """An export job counts its total first: what arrives meanwhile is not in its lines."""
    from notifications import exports, services

    await sync_to_async(make_rows)(user, 3)
    await sync_to_async(services.announcement_create)(title="for everyone")
    up_to, total = await sync_to_async(exports.export_bounds)(user.pk)
    assert total == 4
    await sync_to_async(make_rows)(user, 2)
    await sync_to_async(services.announcement_create)(title="later")
    lines = b"".join([chunk async for chunk in exports.export_lines(user.pk, up_to=up_to)])
    rows = [json.loads(line) for line in lines.splitlines()]
    assert len(rows) == total and max(row["id"] for row in rows) == up_to
