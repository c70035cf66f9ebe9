"""Writes of notifications, each publishing to the recipients' streams after commit.

The one place that creates notifications and marks them read: views, the admin, the
``notify`` command and other apps (chat mentions) call these functions, never the model's
manager or the channel layer directly.
"""

from collections.abc import Iterable

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from notifications import counters, selectors
from notifications.events import (
    created_event,
    read_event,
    session_digest,
    session_ended_event,
    user_key,
)
from notifications.models import Notification
from streamsite.streaming.publish import publish_batch_on_commit, publish_on_commit

#: Rows written (and recipients published) per batch when notifying many users.
BATCH_SIZE = 1000


def _validated(**fields) -> Notification:
    """Build a notification and validate its fields; raises ``ValidationError``."""
    notification = Notification(**fields)
    notification.full_clean(exclude=["recipient"])
    return notification


def notification_create(
    *, recipient, title: str, body: str = "", url: str = "", level: str = Notification.Level.INFO
) -> Notification:
    """Store a notification for one user and push it to their open pages after commit."""
    notification = _validated(title=title, body=body, url=url, level=level)
    notification.recipient = recipient
    with transaction.atomic():
        # The counter first: it is the user's commit-order lock (notifications/counters.py).
        unread = counters.counters_increment([notification.recipient_id])[notification.recipient_id]
        notification.save()
        publish_on_commit(
            user_key(notification.recipient_id), created_event(notification.as_event(), unread)
        )
    return notification


def notifications_create_many(
    *,
    recipients: Iterable,
    title: str,
    body: str = "",
    url: str = "",
    level: str = Notification.Level.INFO,
) -> int:
    """Store the same notification for many users; return how many were created.

    One counter upsert, one bulk write and one channel-layer message per ``BATCH_SIZE``
    recipients: a batch carries the shared fields once and each recipient's id and unread
    count (deliberately not one publish per recipient: each ``group_send`` costs several
    Redis round trips, so 5,000 of them would take seconds). Nothing here reads the
    recipients' history: the cost is the same whatever their backlog. Users given twice
    are notified once.
    """
    template = _validated(title=title, body=body, url=url, level=level)
    # Ascending ids: the order counters are locked in (notifications/counters.py).
    recipient_ids = sorted({int(getattr(r, "pk", r)) for r in recipients})
    created_at = timezone.now()
    base = {
        "kind": "created",
        **{k: v for k, v in template.as_event().items() if k != "id"},
        "created_at": created_at.isoformat(),
    }
    with transaction.atomic():
        for start in range(0, len(recipient_ids), BATCH_SIZE):
            chunk = recipient_ids[start : start + BATCH_SIZE]
            unread = counters.counters_increment(chunk)
            rows = Notification.objects.bulk_create(
                [
                    Notification(
                        recipient_id=recipient_id,
                        title=template.title,
                        body=template.body,
                        url=template.url,
                        level=template.level,
                        created_at=created_at,
                    )
                    for recipient_id in chunk
                ]
            )
            publish_batch_on_commit(
                [user_key(row.recipient_id) for row in rows],
                base,
                {
                    "id": [row.pk for row in rows],
                    "unread": [unread[row.recipient_id] for row in rows],
                },
            )
    return len(recipient_ids)


def notifications_create_for_active_users(
    *, title: str, body: str = "", url: str = "", level: str = Notification.Level.INFO
) -> int:
    """Notify every active user (an announcement); return how many were notified."""
    recipient_ids = get_user_model().objects.filter(is_active=True).values_list("pk", flat=True)
    return notifications_create_many(
        recipients=list(recipient_ids), title=title, body=body, url=url, level=level
    )


def notification_mark_read(*, user, notification_id: int) -> bool:
    """Mark one of ``user``'s notifications read; False if it is not theirs or was read."""
    with transaction.atomic():
        changed = Notification.objects.filter(
            pk=notification_id, recipient_id=user.pk, read_at__isnull=True
        ).update(read_at=timezone.now())
        if changed:
            unread = counters.counter_decrement(user.pk, changed)
            publish_on_commit(
                user_key(user.pk), read_event(ids=[int(notification_id)], up_to=None, unread=unread)
            )
    return bool(changed)


def notifications_mark_all_read(*, user) -> int:
    """Mark all of ``user``'s notifications read; return how many changed."""
    with transaction.atomic():
        up_to = selectors.latest_notification_id(user.pk)
        changed = Notification.objects.filter(
            recipient_id=user.pk, read_at__isnull=True, id__lte=up_to
        ).update(read_at=timezone.now())
        if changed:
            unread = counters.counter_decrement(user.pk, changed)
            publish_on_commit(user_key(user.pk), read_event(ids=None, up_to=up_to, unread=unread))
    return changed


def notifications_mark_read_many(*, notification_ids: Iterable[int]) -> int:
    """Mark these notifications read, whoever they belong to (staff tools); return how many
    changed.

    One UPDATE, then one ``read`` event per recipient affected (its ids and unread count),
    sent in batches like ``notifications_create_many``'s.
    """
    ids = list(dict.fromkeys(int(pk) for pk in notification_ids))
    with transaction.atomic():
        # Lock the unread rows first, so a concurrent mark-read cannot make the ids we
        # announce differ from the ones we changed.
        rows = list(
            Notification.objects.select_for_update()
            .filter(pk__in=ids, read_at__isnull=True)
            .order_by("pk")
            .values_list("pk", "recipient_id")
        )
        if not rows:
            return 0
        Notification.objects.filter(pk__in=[pk for pk, _ in rows]).update(read_at=timezone.now())
        by_recipient: dict[int, list[int]] = {}
        for pk, recipient_id in rows:
            by_recipient.setdefault(recipient_id, []).append(pk)
        unread = counters.counters_decrement(
            {recipient_id: len(pks) for recipient_id, pks in by_recipient.items()}
        )
        recipients = sorted(by_recipient)
        for start in range(0, len(recipients), BATCH_SIZE):
            chunk = recipients[start : start + BATCH_SIZE]
            publish_batch_on_commit(
                [user_key(recipient_id) for recipient_id in chunk],
                {"kind": "read", "up_to": None},
                {
                    "ids": [by_recipient[recipient_id] for recipient_id in chunk],
                    "unread": [unread[recipient_id] for recipient_id in chunk],
                },
            )
    return len(rows)


def notifications_delete(*, notification_ids: Iterable[int]) -> int:
    """Delete these notifications, whoever they belong to (staff tools); return how many.

    The unread ones come off their recipients' counters in the same transaction, and each
    recipient's open pages get a ``deleted`` event with the ids and the new unread count.
    """
    ids = list(dict.fromkeys(int(pk) for pk in notification_ids))
    with transaction.atomic():
        rows = list(
            Notification.objects.select_for_update()
            .filter(pk__in=ids)
            .order_by("pk")
            .values_list("pk", "recipient_id", "read_at")
        )
        if not rows:
            return 0
        Notification.objects.filter(pk__in=[pk for pk, _, _ in rows]).delete()
        by_recipient: dict[int, list[int]] = {}
        unread_removed: dict[int, int] = {}
        for pk, recipient_id, read_at in rows:
            by_recipient.setdefault(recipient_id, []).append(pk)
            unread_removed.setdefault(recipient_id, 0)
            if read_at is None:
                unread_removed[recipient_id] += 1
        unread = counters.counters_decrement(unread_removed)
        recipients = sorted(by_recipient)
        for start in range(0, len(recipients), BATCH_SIZE):
            chunk = recipients[start : start + BATCH_SIZE]
            publish_batch_on_commit(
                [user_key(recipient_id) for recipient_id in chunk],
                {"kind": "deleted"},
                {
                    "ids": [by_recipient[recipient_id] for recipient_id in chunk],
                    "unread": [unread[recipient_id] for recipient_id in chunk],
                },
            )
    return len(rows)


def unread_counters_rebuild(*, user_ids: Iterable[int] | None = None) -> int:
    """Recount unread counters from the rows (after a bulk import or a repair); return how
    many users have unread notifications. Counts every unread row: never per publish."""
    return counters.counters_rebuild(None if user_ids is None else list(user_ids))


def notification_streams_end_for_session(*, user_id: int, session_key: str) -> None:
    """End the notification streams a browser session has open (it logged out).

    Without this a logged-out browser would keep receiving the user's notifications on
    the stream it opened while logged in, until it closed the page.
    """
    publish_on_commit(user_key(user_id), session_ended_event(session_digest(session_key)))
