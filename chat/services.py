"""Writes of the chat app: rooms, memberships, messages, published after commit.

The one place that changes chat data: views, consumers, the admin and ``seed_demo`` call
these functions, never the models' managers or the channel layer directly. Whatever
changes what open sockets show (a message, a deletion, a removal) publishes an event to
``chat.events.room_key(room.pk)`` through ``publish_on_commit``, so a client never hears of
a row it cannot read yet, and a rolled-back write announces nothing.

Joining public rooms: reading a public room needs no membership; the first message a user
posts there makes them a member (``message_post``). Membership is what gives a user unread
counts, @mentions and the export, so merely looking at a room subscribes nobody to anything.
Private rooms are joined only by being added (``membership_add``: a moderator, the admin).
"""

import re
import uuid

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone
from django.utils.text import Truncator, slugify

from chat import permissions, room_assistant, selectors
from chat.events import (
    member_removed_event,
    message_deleted_event,
    message_event,
    message_payload,
    room_deleted_event,
    room_key,
    typing_event,
)
from chat.models import Membership, Message, Room
from chat.unread_watch import EVENT as UNREAD_EVENT
from chat.validators import clean_message_body
from notifications.services import notifications_create_many, stream_watch_refresh
from streamsite.streaming.db import db_call
from streamsite.streaming.hub import event_message
from streamsite.streaming.publish import apublish, publish_on_commit

#: ``@name`` where name is what Django allows in a username; not inside a word or address.
MENTION = re.compile(r"(?<![\w.@+-])@([\w.@+-]+)")
#: Names looked up per message: a message naming hundreds of users notifies the first few.
MAX_MENTIONS = 20
#: Characters of the message quoted in a mention's notification.
MENTION_EXCERPT_LENGTH = 200
#: A notification title's limit (``notifications.models.Notification.title``).
NOTIFICATION_TITLE_LENGTH = 200


# Rooms ------------------------------------------------------------------------------------


def room_create(*, creator, name: str, slug: str | None = None, is_private: bool = False) -> Room:
    """Create a room; its creator becomes its moderator.

    Without a ``slug``, one is made from the name (``-2``, ``-3``... when taken). A given
    slug must be free. Raises ``ValidationError`` (by field) or ``PermissionDenied``.
    """
    if not permissions.is_active_user(creator):
        raise PermissionDenied("Log in to create a room.")
    name = (name or "").strip()
    given = (slug or "").strip().lower()
    room = Room(name=name, slug=given or _slug_from(name), is_private=bool(is_private))
    room.full_clean(validate_unique=False)
    for _attempt in range(5):
        if given and Room.objects.filter(slug=given).exists():
            break
        if not given:
            room.slug = _free_slug(room.slug)
        try:
            with transaction.atomic():
                room.save()
                Membership.objects.create(room=room, user=creator, role=Membership.Role.MODERATOR)
        except IntegrityError:
            room.pk = None  # someone took the slug between the check and the insert
            continue
        return room
    raise ValidationError(
        {"slug": ValidationError("A room with this slug already exists.", code="unique")}
    )


def room_delete(*, room: Room) -> None:
    """Delete a room with its memberships and messages; its open sockets close (4404).

    Publishes ``room.deleted`` after commit, so no socket keeps listening to a room that
    no longer exists.
    """
    room_id = room.pk
    with transaction.atomic():
        # Sends in flight commit first (their lock, ``_lock_room_for_ids``); later ones
        # find no room. Without it a send could wait on a membership this deletes while
        # holding the lock this delete waits for: a deadlock.
        list(Room.objects.select_for_update().filter(pk=room_id).values_list("pk"))
        room.delete()
        publish_on_commit(room_key(room_id), room_deleted_event())


def _slug_from(name: str) -> str:
    return slugify(name)[: Room._meta.get_field("slug").max_length].strip("-") or "room"


def _free_slug(base: str) -> str:
    """``base``, or ``base-N`` with the smallest N that no room uses."""
    limit = Room._meta.get_field("slug").max_length
    taken = set(Room.objects.filter(slug__startswith=base).values_list("slug", flat=True))
    if base not in taken:
        return base
    number = 2
    while True:
        suffix = f"-{number}"
        candidate = base[: limit - len(suffix)] + suffix
        if candidate not in taken:
            return candidate
        number += 1


# Memberships ------------------------------------------------------------------------------


def membership_add(*, room: Room, user, role: str | None = None) -> tuple[Membership, bool]:
    """Make ``user`` a member of ``room``; return the membership and whether it is new.

    A new member starts with everything before now read (``role`` defaults to member). An
    existing member keeps their read position; their role changes only if ``role`` is given.
    """
    with transaction.atomic():
        membership, created = Membership.objects.get_or_create(
            room=room,
            user=user,
            defaults={
                "role": role or Membership.Role.MEMBER,
                "last_read_message_id": selectors.latest_message_id(room.pk) or None,
            },
        )
        if not created and role and membership.role != role:
            membership.role = role
            membership.save(update_fields=["role"])
        if created:
            _unread_changed(membership.user_id)
    return membership, created


def membership_remove(*, room: Room, user) -> bool:
    """Take ``user`` out of ``room``; their open sockets there are told at once.

    Publishes ``member.removed`` after commit. False if they were not a member.
    """
    user_id = getattr(user, "pk", user)
    with transaction.atomic():
        deleted, _ = Membership.objects.filter(room_id=room.pk, user_id=user_id).delete()
        if deleted:
            # The user's notification streams follow the room: this makes them count again.
            publish_on_commit(room_key(room.pk), member_removed_event(user_id))
    return bool(deleted)


def membership_mark_read(*, user, room: Room, up_to: int) -> bool:
    """Move the user's read position in the room forward to message ``up_to``.

    Never backwards, and never past the room's latest message (a client cannot mark the
    future read). False when nothing changed or the user is not a member.
    """
    up_to = int(up_to)
    if up_to < 0:
        raise ValueError("up_to must be a message id")
    up_to = min(up_to, selectors.latest_message_id(room.pk))
    if up_to == 0:
        return False
    with transaction.atomic():
        advanced = bool(_advance_read_position(room.pk, user.pk, up_to))
        if advanced:
            _unread_changed(user.pk)
    return advanced


async def amembership_mark_read(*, user, room: Room, up_to: int) -> bool:
    """``membership_mark_read`` for consumers (see db_call)."""
    return await db_call(membership_mark_read, user=user, room=room, up_to=up_to)


def _advance_read_position(room_id: int, user_id: int, up_to: int) -> int:
    return (
        Membership.objects.filter(room_id=room_id, user_id=user_id)
        .filter(Q(last_read_message_id__isnull=True) | Q(last_read_message_id__lt=up_to))
        .update(last_read_message_id=up_to)
    )


def _unread_changed(user_id: int) -> None:
    """The user's unread counts changed where room events do not say: their notification
    streams read them again after commit (``chat.unread_watch``)."""
    stream_watch_refresh(user_id=user_id, event=UNREAD_EVENT)


# Messages ---------------------------------------------------------------------------------


def message_post(*, user, room: Room, client_id, body: str) -> tuple[Message, bool]:
    """Store a message and broadcast it to the room after commit.

    Returns ``(message, created)``. Idempotent on ``(room, author, client_id)``: sending
    the same ``client_id`` again returns the message stored the first time (whatever the
    body) and stores and publishes nothing, even when two sends race.

    The body is trimmed; ``ValidationError`` (a single error whose ``code`` is ``blank``,
    ``too_long``, ``null_characters_not_allowed`` or ``invalid``: a bad ``client_id``, a
    lone surrogate in the body) when it cannot be stored. ``PermissionDenied`` when the
    user may not post here.

    Posting in a public room makes the author a member; posting moves the author's read
    position to their message. ``@username`` of another active member notifies them
    (``notifications.services``), in the same transaction.

    In a room with the assistant, a message that mentions ``@assistant`` also stores the
    assistant's answer as the next message and starts it (``chat.room_assistant``). If the
    assistant refuses (the asker's limits), the message is stored all the same and
    ``message.assistant_unavailable`` says why (empty otherwise).
    """
    if not permissions.can_post(user, room):
        raise PermissionDenied("You cannot post in this room.")
    client_id = _parse_client_id(client_id)
    existing = _sent_before(room, user, client_id)
    if existing is not None:
        existing.assistant_unavailable = ""
        return existing, False
    body = clean_message_body(body)
    with transaction.atomic():
        _lock_room_for_ids(room.pk)
        previous_id = _latest_message_id(room.pk)
        try:
            # A savepoint: if a concurrent send with this client_id won, the outer
            # transaction stays usable (PostgreSQL aborts a transaction on any error).
            with transaction.atomic():
                message = Message.objects.create(
                    room=room, author=user, client_id=client_id, body=body
                )
        except IntegrityError:
            won = _sent(room, user, client_id)
            won.assistant_unavailable = ""
            return won, False
        answer, message.assistant_unavailable = room_assistant.answer_mention(
            message=message, room=room, user=user
        )
        latest = answer.pk if answer is not None else message.pk
        if not _advance_read_position(room.pk, user.pk, latest) and not room.is_private:
            _membership, joined = Membership.objects.get_or_create(
                room=room, user=user, defaults={"last_read_message_id": latest}
            )
        else:
            joined = False
        # The room hears of the message before a mentioned user's bell does, and of the
        # question before its answer.
        key = room_key(room.pk)
        publish_on_commit(key, message_event(message_payload(message), previous_id=previous_id))
        if answer is not None:
            answer_event = message_event(
                message_payload(answer),
                answer_id=answer.assistant_answer_id,
                previous_id=message.pk,
            )
            publish_on_commit(key, answer_event)
        _notify_mentioned(message, room, user)
        if joined:
            _unread_changed(user.pk)  # a room their notification streams do not follow yet
    return message, True


async def amessage_post(*, user, room: Room, client_id, body: str) -> tuple[Message, bool]:
    """``message_post`` for consumers (see db_call); the publish still waits for the commit."""
    return await db_call(message_post, user=user, room=room, client_id=client_id, body=body)


def _lock_room_for_ids(room_id: int) -> None:
    """Hold the room's row until this transaction ends, so its message ids are in commit order.

    Clients resume "after message N" (``chat.selectors.messages_after``). Ids come from a
    sequence when the row is inserted, not when it commits: without this lock a send that
    drew id 7 could commit after one that drew id 8, and a client that saw 8 and resumed
    after it would never get 7. Taken before the insert, the lock makes a second send to
    the room wait for the first one's commit before it draws its id. ``FOR NO KEY UPDATE``
    conflicts with itself and with ``room_delete``'s lock, not with the foreign-key checks
    of memberships and the assistant's conversation (``FOR KEY SHARE``), so only writers
    of the room's messages wait. One indexed row, whatever the room's history: the cost is
    one round trip per send (measured in ``docs/architecture.md``). SQLite ignores it (it
    runs one writing transaction at a time anyway).

    Raises ``PermissionDenied`` if the room was deleted meanwhile.
    """
    locked = Room.objects.select_for_update(no_key=True).filter(pk=room_id).values_list("pk")
    if not locked:
        raise PermissionDenied("This room no longer exists.")


def _latest_message_id(room_id: int) -> int | None:
    """The room's newest message id (under ``_lock_room_for_ids``: committed, and the one
    the next message follows), or None for an empty room.

    A message's event names it (``previous_id``). Ids are in commit order, but events from
    different processes reach a socket in the order the channel layer delivers them: 8
    can arrive before 7. A socket that has not sent 7 when 8 comes holds 8 until 7's event
    comes, or reads the room from the database if it does not (``chat.reorder``), so no
    client holds 8 without 7 and resumes past 7.
    One step down the room's (room, id) index, whatever its history.
    """
    latest = Message.objects.filter(room_id=room_id).order_by("-id").values_list("id", flat=True)
    return latest.first()


def _parse_client_id(client_id) -> uuid.UUID:
    if isinstance(client_id, uuid.UUID):
        return client_id
    try:
        return uuid.UUID(str(client_id))
    except (ValueError, TypeError, AttributeError):
        raise ValidationError("client_id must be a UUID.", code="invalid") from None


def _sent_before(room: Room, user, client_id: uuid.UUID) -> Message | None:
    """The message this client already sent with ``client_id``, if any (the retry's fast path)."""
    return (
        Message.objects.filter(room_id=room.pk, author_id=user.pk, client_id=client_id)
        .select_related("author", "room")
        .first()
    )


def _sent(room: Room, user, client_id: uuid.UUID) -> Message:
    """The message that won a race on ``client_id``: committed, since our insert saw it."""
    return Message.objects.select_related("author", "room").get(
        room_id=room.pk, author_id=user.pk, client_id=client_id
    )


def _notify_mentioned(message: Message, room: Room, author) -> int:
    """Notify the room's members named with ``@username`` (not the author); return how many."""
    names = []
    for match in MENTION.finditer(message.body):
        name = match.group(1)
        # "@bob." and "@bob-" end a sentence or clause more often than a username.
        names += [name, name.rstrip(".-+@")]
        if len(names) >= 2 * MAX_MENTIONS:
            break
    recipients = selectors.member_ids_named(room, names, exclude_user_id=author.pk)
    if not recipients:
        return 0
    title = f"{author.get_username()} mentioned you in #{room.slug}"
    return notifications_create_many(
        recipients=recipients,
        title=Truncator(title).chars(NOTIFICATION_TITLE_LENGTH),
        body=Truncator(message.body).chars(MENTION_EXCERPT_LENGTH),
        url=reverse("chat:room", kwargs={"slug": room.slug}) + f"#message-{message.pk}",
    )


def message_delete(*, user, message: Message) -> bool:
    """Delete a message as a moderator (room role) or staff; every client removes it live.

    The row stays, so ids stay continuous and history can show "message deleted", but its
    text is erased: exports, history and the admin never show it again (a moderator
    deletes what should not be kept); deleting the assistant's answer stops and erases
    it in the assistant too. Who deleted it, and when, is recorded. Publishes
    ``message.deleted`` after commit. False if it was already deleted.
    """
    room = message.room
    if not permissions.can_moderate(user, room):
        raise PermissionDenied("Only the room's moderators can delete messages.")
    now = timezone.now()
    with transaction.atomic():
        changed = Message.objects.filter(pk=message.pk, deleted_at__isnull=True).update(
            deleted_at=now, deleted_by=user, body=""
        )
        if changed:
            publish_on_commit(room_key(room.pk), message_deleted_event(message.pk))
            room_assistant.answer_erase_for_deleted(message)
    if changed:
        message.deleted_at, message.deleted_by, message.body = now, user, ""
    return bool(changed)


# Typing -----------------------------------------------------------------------------------


async def atyping_announce(*, user, room: Room) -> None:
    """Tell the room's other sockets that ``user`` is typing. Nothing is stored.

    The caller throttles (a socket announces at most every few seconds). Raises
    ``PermissionDenied`` when the user may not post here: typing is a prelude to posting.
    """
    if not await permissions.acan_post(user, room):
        raise PermissionDenied("You cannot post in this room.")
    key = room_key(room.pk)
    await apublish(key, event_message(key, typing_event(user)))
