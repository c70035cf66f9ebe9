"""The baseline: notifications over SSE the way the Channels tutorial does it.

Every connection creates its own channel-layer channel and joins its user's group; the
publisher sends one ``group_send`` per recipient. That is "one channel-layer group member
per connection", which streamsite's per-process hub (``streamsite.streaming.hub``) replaces.

The baseline is careful where carelessness would only break it, not slow it down:

- one long-lived ``receive()`` task is raced against the keepalive timer with
  ``asyncio.wait``; it is never cancelled by a timeout (a cancelled channels-redis receive
  can drop a message it already took);
- the stream gives its database connection back after its one query
  (``close_old_connections`` in the request's thread): without that every idle stream
  pins a pooled connection and the eleventh stream waits for the pool (10) and fails.

Otherwise it is the plain async ORM, as a tutorial would write it: its query runs in the
request's own executor thread, which then lives as long as the stream.

Its writes are streamsite's (the same bulk insert and unread counts), so the difference
measured is the fan-out. It also has a naive export (Django's ``aiterator()``, one chunk
per row, as Django's documentation streams a CSV) to compare with streamsite's export.
"""

import asyncio
import json
from collections.abc import AsyncIterator, Iterable

from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import close_old_connections, transaction
from django.http import HttpResponse, StreamingHttpResponse
from django.utils import timezone
from django.views.decorators.http import require_GET

from notifications import counters
from notifications.events import NOTIFICATION_FIELDS
from notifications.models import Notification
from streamsite.streaming.sse import KEEPALIVE, encode_json_event, encode_retry

#: Rows written per bulk insert, as in ``notifications.services``.
BATCH_SIZE = 1000


def user_group(user_id: int) -> str:
    """The channel-layer group of one user's baseline streams."""
    return f"bench.user.{int(user_id)}"


async def ready(request):
    """Answer once the server is up (the harness polls this)."""
    return HttpResponse(b"ok\n", content_type="text/plain")


@require_GET
async def stream(request):
    """The logged-in user's notifications as SSE, one channel per connection."""
    user = await request.auser()
    if not user.is_authenticated:
        return HttpResponse(b"Log in first.\n", status=403, content_type="text/plain")
    response = StreamingHttpResponse(
        event_stream(user.pk), content_type="text/event-stream; charset=utf-8"
    )
    response["Cache-Control"] = "no-cache, no-store"
    response["X-Accel-Buffering"] = "no"
    return response


async def event_stream(user_id: int) -> AsyncIterator[bytes]:
    """Join the user's group with a channel of our own, then forward what it receives."""
    layer = get_channel_layer()
    channel = await layer.new_channel()
    group = user_group(user_id)
    await layer.group_add(group, channel)
    receive: asyncio.Future | None = None
    try:
        yield encode_retry(settings.SSE_RETRY_MILLISECONDS)
        unread = await Notification.objects.filter(
            recipient_id=user_id, read_at__isnull=True
        ).acount()
        await sync_to_async(close_old_connections)()
        yield encode_json_event({"count": unread}, event="unread")
        keepalive = settings.SSE_KEEPALIVE_SECONDS
        receive = asyncio.ensure_future(layer.receive(channel))
        while True:
            done, _ = await asyncio.wait({receive}, timeout=keepalive)
            if not done:
                yield KEEPALIVE
                continue
            message = receive.result()
            receive = asyncio.ensure_future(layer.receive(channel))
            yield render(message["event"])
    finally:
        if receive is not None:
            receive.cancel()
        await layer.group_discard(group, channel)


def render(event: dict) -> bytes:
    """The same bytes streamsite sends for a new notification: the event, then the count."""
    payload = {field: event[field] for field in NOTIFICATION_FIELDS}
    return encode_json_event(payload, event="notification", id=event["id"]) + encode_json_event(
        {"count": event["unread"]}, event="unread"
    )


def notifications_create_many(
    *, recipients: Iterable, title: str, body: str = "", url: str = "", level: str = "info"
) -> int:
    """Store a notification for many users, then ``group_send`` to each user's group.

    The writes are ``notifications.services.notifications_create_many``'s; the sends are
    one per recipient, all from one event loop after the commit.
    """
    recipient_ids = list(dict.fromkeys(getattr(r, "pk", r) for r in recipients))
    created_at = timezone.now()
    events: list[tuple[int, dict]] = []
    with transaction.atomic():
        for start in range(0, len(recipient_ids), BATCH_SIZE):
            chunk = recipient_ids[start : start + BATCH_SIZE]
            unread = counters.counters_increment(chunk)
            rows = Notification.objects.bulk_create(
                [
                    Notification(
                        recipient_id=recipient_id,
                        title=title,
                        body=body,
                        url=url,
                        level=level,
                        created_at=created_at,
                    )
                    for recipient_id in chunk
                ]
            )
            events += [
                (
                    row.recipient_id,
                    {
                        **row.as_event(),
                        "kind": "created",
                        "unread": unread.get(row.recipient_id, 0),
                    },
                )
                for row in rows
            ]
        transaction.on_commit(lambda: async_to_sync(send_each)(events))
    return len(recipient_ids)


async def send_each(events: list[tuple[int, dict]]) -> None:
    """One ``group_send`` per recipient, in order."""
    layer = get_channel_layer()
    for user_id, event in events:
        await layer.group_send(user_group(user_id), {"type": "bench.notification", "event": event})


@require_GET
async def export(request):
    """Every notification of the user as NDJSON, the way Django's docs stream rows."""
    user = await request.auser()
    if not user.is_authenticated:
        return HttpResponse(b"Log in first.\n", status=403, content_type="text/plain")
    return StreamingHttpResponse(
        export_rows(user.pk), content_type="application/x-ndjson; charset=utf-8"
    )


async def export_rows(user_id: int) -> AsyncIterator[bytes]:
    rows = (
        Notification.objects.filter(recipient_id=user_id)
        .order_by("id")
        .values("id", "title", "body", "url", "level", "created_at", "read_at")
    )
    async for row in rows.aiterator(chunk_size=2000):
        read_at = row["read_at"]
        line = {
            **row,
            "created_at": row["created_at"].isoformat(),
            "read": read_at is not None,
            "read_at": read_at.isoformat() if read_at else None,
        }
        yield json.dumps(line, separators=(",", ":")).encode() + b"\n"
