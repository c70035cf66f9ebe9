"""Services write what they should and publish it only after the transaction commits."""

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from notifications import services
from notifications.events import ANNOUNCEMENTS_KEY, user_key
from notifications.models import Notification
from streamsite.streaming.hub import HUB_GROUP, expand_message


def created(notification: Notification, unread: int, previous: int = 0) -> dict:
    """The ``created`` event clients should get for ``notification``."""
    return {"kind": "created", **notification.as_event(), "unread": unread, "previous": previous}


def inserts(queries: CaptureQueriesContext) -> list[str]:
    """The INSERTs of notification rows (counter upserts are not counted)."""
    return [
        q["sql"]
        for q in queries.captured_queries
        if q["sql"].lstrip().startswith('INSERT INTO "notifications_notification"')
    ]


# notification_create --------------------------------------------------------------------


def test_create_stores_and_publishes_a_created_event(capture_published, user):
    with capture_published() as events:
        notification = services.notification_create(
            recipient=user, title="Deployed", body="v2 is live", url="/chat/", level="success"
        )
        assert events == []  # not before the commit
    stored = Notification.objects.get()
    assert (stored.pk, stored.recipient, stored.title, stored.body, stored.url, stored.level) == (
        notification.pk,
        user,
        "Deployed",
        "v2 is live",
        "/chat/",
        "success",
    )
    assert events == [(f"notifications.user.{user.pk}", created(stored, unread=1))]
    _, event = events[0]
    assert set(event) == {
        "kind", "id", "title", "body", "url", "level", "created_at", "read", "unread",
        "previous",
    }  # fmt: skip
    assert event["created_at"] == stored.created_at.isoformat()


def test_created_event_carries_the_unread_count_after_it(capture_published, user):
    first = services.notification_create(recipient=user, title="one")
    services.notification_create(recipient=user, title="two")
    services.notification_mark_read(user=user, notification_id=first.pk)
    with capture_published() as events:
        services.notification_create(recipient=user, title="three")
    assert [event["unread"] for _, event in events] == [2]


def test_create_publishes_only_when_the_outer_transaction_commits(
    capture_published, transactional_db, user
):
    with capture_published() as events:
        with transaction.atomic():
            services.notification_create(recipient=user, title="inside")
            assert events == []
        assert [event["title"] for _, event in events] == ["inside"]


def test_rolled_back_transaction_stores_and_publishes_nothing(capture_published, user):
    with capture_published() as events, pytest.raises(RuntimeError), transaction.atomic():
        services.notification_create(recipient=user, title="never")
        services.notifications_create_many(recipients=[user], title="never either")
        raise RuntimeError("roll back")
    assert events == []
    assert not Notification.objects.exists()


# notifications_create_many ----------------------------------------------------------------


def test_create_many_is_one_insert_and_one_event_per_recipient(capture_published, make_user):
    users = [make_user(name) for name in ("ann", "ben", "cat")]
    earlier = services.notification_create(recipient=users[1], title="already unread")
    with capture_published() as events, CaptureQueriesContext(connection) as queries:
        count = services.notifications_create_many(
            recipients=users, title="Maintenance", body="at noon", level="warning"
        )
    assert count == 3
    assert len(inserts(queries)) == 1
    rows = {n.recipient_id: n for n in Notification.objects.filter(title="Maintenance")}
    assert sorted(rows) == sorted(u.pk for u in users)
    assert events == [
        (
            user_key(u.pk),
            created(
                rows[u.pk],
                unread=2 if u is users[1] else 1,
                previous=earlier.pk if u is users[1] else 0,  # the feed's id before it
            ),
        )
        for u in users
    ]


def test_create_many_costs_the_same_queries_for_more_recipients(make_user):
    """The bulk write does not grow with the recipients (up to BATCH_SIZE)."""
    few = [make_user(f"few{n}") for n in range(3)]
    many = [make_user(f"many{n}") for n in range(30)]
    counts = []
    for recipients in (few, many):
        with CaptureQueriesContext(connection) as queries:
            services.notifications_create_many(recipients=recipients, title="hello")
        counts.append(len(queries.captured_queries))
    assert counts[0] == counts[1]


def test_create_many_notifies_a_repeated_recipient_once(capture_published, user, other_user):
    with capture_published() as events:
        count = services.notifications_create_many(
            recipients=[user, other_user, user, other_user.pk], title="once each"
        )
    assert count == 2
    assert Notification.objects.filter(recipient=user).count() == 1
    assert Notification.objects.filter(recipient=other_user).count() == 1
    assert sorted(key for key, _ in events) == sorted([user_key(user.pk), user_key(other_user.pk)])


def test_create_many_batches_past_batch_size(capture_published, make_user, monkeypatch):
    monkeypatch.setattr(services, "BATCH_SIZE", 2)
    users = [make_user(f"u{n}") for n in range(5)]
    with capture_published() as events, CaptureQueriesContext(connection) as queries:
        assert services.notifications_create_many(recipients=users, title="batched") == 5
    assert len(inserts(queries)) == 3
    ids = dict(Notification.objects.values_list("recipient_id", "id"))
    assert [(key, event["id"]) for key, event in events] == [
        (user_key(u.pk), ids[u.pk]) for u in users
    ]


def test_create_many_with_no_recipients_does_nothing(capture_published, db):
    with capture_published() as events, CaptureQueriesContext(connection) as queries:
        assert services.notifications_create_many(recipients=[], title="nobody") == 0
    assert inserts(queries) == []
    assert events == []


def test_create_for_active_users_is_one_announcement(capture_published, make_user):
    make_user("on1")
    make_user("on2")
    make_user("off", is_active=False)
    with capture_published() as events:
        count = services.notifications_create_for_active_users(title="Announcement")
    assert count == 2  # active users, who can read it
    announcement = Notification.objects.get()
    assert announcement.recipient_id is None
    assert events == [(ANNOUNCEMENTS_KEY, created(announcement, unread=None))]


# Validation -------------------------------------------------------------------------------

INVALID = [
    pytest.param({"title": ""}, "title", id="empty-title"),
    pytest.param({"title": "x" * 201}, "title", id="title-too-long"),
    pytest.param({"title": "ok", "url": "javascript:alert(1)"}, "url", id="javascript-url"),
    pytest.param({"title": "ok", "url": "//evil.example/"}, "url", id="scheme-relative-url"),
    pytest.param({"title": "ok", "level": "critical"}, "level", id="unknown-level"),
    # Regression: PostgreSQL refuses NUL in text, which used to surface as a 500.
    pytest.param({"title": "a\x00b"}, "title", id="nul-in-title"),
    pytest.param({"title": "ok", "body": "a\x00b"}, "body", id="nul-in-body"),
    pytest.param({"title": "ok", "body": "x" * 5001}, "body", id="body-too-long"),
]


@pytest.mark.parametrize(("fields", "invalid"), INVALID)
def test_create_refuses_invalid_fields_and_publishes_nothing(
    capture_published, user, fields, invalid
):
    with capture_published() as events, pytest.raises(ValidationError) as error:
        services.notification_create(recipient=user, **fields)
    assert set(error.value.message_dict) == {invalid}
    assert not Notification.objects.exists()
    assert events == []


@pytest.mark.parametrize(("fields", "invalid"), INVALID)
def test_create_many_refuses_invalid_fields_and_publishes_nothing(
    capture_published, user, other_user, fields, invalid
):
    with capture_published() as events, pytest.raises(ValidationError) as error:
        services.notifications_create_many(recipients=[user, other_user], **fields)
    assert set(error.value.message_dict) == {invalid}
    assert not Notification.objects.exists()
    assert events == []


def test_create_accepts_a_body_of_exactly_5000_characters(user):
    """A TextField's max_length only sizes widgets; the validator enforces the limit."""
    assert len(services.notification_create(recipient=user, title="ok", body="x" * 5000).body)


# Marking read -----------------------------------------------------------------------------


def test_mark_read_publishes_a_read_event_with_the_new_count(capture_published, user):
    first = services.notification_create(recipient=user, title="one")
    services.notification_create(recipient=user, title="two")
    with capture_published() as events:
        assert services.notification_mark_read(user=user, notification_id=first.pk) is True
    first.refresh_from_db()
    assert first.read_at is not None
    assert events == [
        (user_key(user.pk), {"kind": "read", "ids": [first.pk], "up_to": None, "unread": 1})
    ]


def test_mark_read_twice_changes_and_publishes_nothing_the_second_time(capture_published, user):
    notification = services.notification_create(recipient=user, title="one")
    services.notification_mark_read(user=user, notification_id=notification.pk)
    with capture_published() as events:
        assert services.notification_mark_read(user=user, notification_id=notification.pk) is False
    assert events == []


def test_mark_read_cannot_touch_another_users_notification(capture_published, user, other_user):
    theirs = services.notification_create(recipient=other_user, title="not yours")
    with capture_published() as events:
        assert services.notification_mark_read(user=user, notification_id=theirs.pk) is False
    theirs.refresh_from_db()
    assert theirs.read_at is None
    assert events == []


def test_mark_all_read_publishes_up_to_and_leaves_others_alone(capture_published, user, other_user):
    mine = [services.notification_create(recipient=user, title=f"n{n}") for n in range(3)]
    theirs = services.notification_create(recipient=other_user, title="not yours")
    with capture_published() as events:
        assert services.notifications_mark_all_read(user=user) == 3
    assert not Notification.objects.filter(recipient=user, read_at__isnull=True).exists()
    theirs.refresh_from_db()
    assert theirs.read_at is None
    assert events == [
        (
            user_key(user.pk),
            {
                "kind": "read",
                "ids": None,
                "up_to": mine[-1].pk,
                "unread": 0,
                "announcements_unread": 0,
                "announcements_counted_up_to": 0,
            },
        )
    ]


def test_mark_all_read_with_nothing_unread_publishes_nothing(capture_published, user, other_user):
    services.notification_create(recipient=other_user, title="not yours")
    with capture_published() as events:
        assert services.notifications_mark_all_read(user=user) == 0
    assert events == []


def test_rolled_back_mark_read_publishes_nothing(capture_published, user):
    notification = services.notification_create(recipient=user, title="one")
    with capture_published() as events, pytest.raises(RuntimeError), transaction.atomic():
        services.notification_mark_read(user=user, notification_id=notification.pk)
        services.notifications_mark_all_read(user=user)
        raise RuntimeError("roll back")
    assert events == []
    notification.refresh_from_db()
    assert notification.read_at is None


# What crosses the channel layer -----------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_every_event_crosses_the_real_channel_layer_unchanged(
    channel_layer, capture_published, user, other_user
):
    """What the layer delivers (msgpack through Redis, or the in-memory copy) equals what
    ``capture_published`` recorded after a JSON round trip: every payload is plain JSON."""
    channel = await channel_layer.new_channel()
    for group in (HUB_GROUP, user_key(user.pk), user_key(other_user.pk)):
        await channel_layer.group_add(group, channel)

    def write_everything():
        with capture_published() as events:
            first = services.notification_create(
                recipient=user, title="Ünïcode ✓", body="two\nlines", url="https://example.com/"
            )
            services.notifications_create_many(recipients=[user, other_user], title="all")
            services.notification_mark_read(user=user, notification_id=first.pk)
            services.notifications_mark_all_read(user=other_user)
        return events

    captured = await sync_to_async(write_everything)()
    assert len(captured) == 5
    received: list[tuple[str, dict]] = []
    async with asyncio.timeout(10):
        while len(received) < len(captured):
            received.extend(expand_message(await channel_layer.receive(channel)))
    assert sorted(received, key=json.dumps) == sorted(captured, key=json.dumps)


def test_mark_read_many_publishes_one_read_event_per_recipient(capture_published, user, other_user):
    mine = [services.notification_create(recipient=user, title=f"m{n}") for n in range(2)]
    theirs = services.notification_create(recipient=other_user, title="t")
    already = services.notification_create(recipient=other_user, title="read")
    services.notification_mark_read(user=other_user, notification_id=already.pk)
    with capture_published() as events:
        changed = services.notifications_mark_read_many(
            notification_ids=[mine[0].pk, mine[1].pk, theirs.pk, already.pk, mine[0].pk]
        )
    assert changed == 3
    assert sorted(events, key=lambda e: e[0]) == sorted(
        [
            (
                user_key(user.pk),
                {"kind": "read", "up_to": None, "ids": [m.pk for m in mine], "unread": 0},
            ),
            (
                user_key(other_user.pk),
                {"kind": "read", "up_to": None, "ids": [theirs.pk], "unread": 0},
            ),
        ],
        key=lambda e: e[0],
    )
    assert not Notification.objects.filter(read_at__isnull=True).exists()


def test_mark_read_many_with_nothing_unread_publishes_nothing(capture_published, db):
    with capture_published() as events:
        assert services.notifications_mark_read_many(notification_ids=[1, 2]) == 0
    assert events == []
