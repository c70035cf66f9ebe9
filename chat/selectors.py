"""Reads of rooms and messages: room lists with unread counts, history, resume, export.

Async readers for sockets and streams run on the shared thread pool and release their
connection (``streamsite.streaming.db.db_call``). The export streams rows from the ORM in
chunks (``streamsite.streaming.orm.astream``). Callers consume the async generators under
``contextlib.aclosing``.

Messages that show the assistant's answers get its state (text so far, status, position)
from ``assistant.selectors.answer_states``, one query per page of messages, in the same
call as the page (``attach_answer_states``).
"""

from collections.abc import AsyncIterator, Iterable
from contextlib import aclosing
from dataclasses import dataclass
from functools import partial

from django.db.models import (
    Case,
    F,
    FilteredRelation,
    IntegerField,
    OuterRef,
    Q,
    Subquery,
    Value,
    When,
)
from django.db.models.functions import Coalesce, Lower

from assistant.selectors import answer_states
from chat.conf import HISTORY_MAX_LIMIT, HISTORY_PAGE_SIZE
from chat.events import MISSING_ANSWER
from chat.models import Membership, Message, Room
from streamsite.prebuilt_query import PrebuiltQuery
from streamsite.streaming.db import db_call, keyset_pages
from streamsite.streaming.orm import astream
from streamsite.streaming.shared_reads import shared_reads

#: The most unread messages counted, per room and in all: from there pages show "99+".
#: Counting stops at the cap, so a long backlog costs no more than this many rows.
UNREAD_CAP = 100

#: The fields of an export row (``messages_for_export``).
EXPORT_FIELDS = (
    "id",
    "client_id",
    "author_id",
    "author__username",
    "body",
    "created_at",
    "edited_at",
    "deleted_at",
    "assistant_answer_id",
)


def room_by_slug(slug: str) -> Room | None:
    return Room.objects.filter(slug=slug).first()


async def ajoining_room(slug: str) -> Room | None:
    """``room_by_slug`` for a socket's handshake, shared with the sockets joining the same
    room at the same moment (``streamsite.streaming.shared_reads``): the same ``Room``
    object, which its holders only read."""
    return await shared_reads().read(("chat.room_by_slug", slug), room_by_slug, slug)


def room_by_id(room_id: int) -> Room | None:
    return Room.objects.filter(pk=room_id).first()


def assistant_enabled(room_id: int) -> bool:
    """Whether the room has the assistant now (a socket's ``Room`` may be older)."""
    return Room.objects.filter(pk=room_id, assistant_enabled=True).exists()


def attach_answer_states(messages: Iterable[Message]) -> None:
    """Give each message showing an assistant's answer its ``answer_state`` (one query).

    ``{"status", "text", "position", "error"}`` as ``assistant.selectors.answer_states``
    reads it; a message whose answer is gone gets ``chat.events.MISSING_ANSWER``.
    """
    showing = [m for m in messages if m.assistant_answer_id is not None and m.deleted_at is None]
    if not showing:
        return
    states = answer_states({m.assistant_answer_id for m in showing})
    for message in showing:
        message.answer_state = states.get(message.assistant_answer_id, MISSING_ANSWER)


def rooms_for(user) -> list[Room]:
    """The rooms ``user`` can see, by name, in one query, each annotated with:

    - ``role``: the user's role in it, None when not a member;
    - ``unread``: for members, how many messages by others, not deleted, came after the
      user's ``last_read_message_id``, up to ``UNREAD_CAP``; None for rooms the user has
      not joined.

    Public rooms and the user's rooms; staff see every room.
    """
    rooms = Room.objects.annotate(
        mine=FilteredRelation("memberships", condition=Q(memberships__user_id=user.pk)),
        membership_id=F("mine__id"),  # filtering on "mine" itself would join it twice
        role=F("mine__role"),
        last_read=Coalesce(F("mine__last_read_message_id"), Value(0)),
    )
    if not user.is_staff:
        rooms = rooms.filter(Q(is_private=False) | Q(membership_id__isnull=False))
    unread = _capped_unread(OuterRef("pk"), OuterRef("last_read"), user.pk)
    # Counted for members only: a public room the user never joined has no read cursor.
    rooms = rooms.annotate(
        unread=Case(When(membership_id__isnull=False, then=unread), output_field=IntegerField())
    )
    return list(rooms.order_by("name", "id"))


def unread_total(user) -> int:
    """How many messages by others, not deleted, the user has not read in all their rooms,
    counted up to ``UNREAD_CAP`` (pages show "99+" from there: ``unread_label``).

    One query on every page (the header's "Chat" link): the user's memberships joined to
    the messages after each one's read cursor (index ``(room, id)``), under ``LIMIT
    UNREAD_CAP``. The database stops at the cap, so a backlog of 100,000 unread messages
    costs what 100 cost, and messages read long ago are never visited.
    """
    return unread_total_query(user).count()  # SELECT COUNT(*) FROM (... LIMIT 100)


def unread_total_query(user):
    """The ids ``unread_total`` counts: at most ``UNREAD_CAP`` (its test explains it)."""
    return (
        Message.objects.filter(
            room__memberships__user_id=user.pk,
            id__gt=Coalesce(F("room__memberships__last_read_message_id"), Value(0)),
            deleted_at__isnull=True,
        )
        .exclude(author_id=user.pk)
        .order_by()
        .values("id")[:UNREAD_CAP]
    )


def unread_label(count: int | None) -> str:
    """A capped count as pages show it: "99+" from ``UNREAD_CAP`` on, else the number."""
    count = int(count or 0)
    return f"{UNREAD_CAP - 1}+" if count >= UNREAD_CAP else str(count)


def unread_by_room(user_id: int) -> list[tuple[int, str, int, int]]:
    """``(room_id, slug, unread, latest_id)`` for each room ``user_id`` is a member of.

    ``unread`` is counted up to ``UNREAD_CAP`` (as ``unread_total``); ``latest_id`` is
    the room's highest message id when read (0: none). One query whose cost is the
    number of rooms times at most ``UNREAD_CAP`` index entries, whatever the backlog:
    the live count of the user's notification stream (``chat.unread_watch``), read by
    every stream as it connects. Its queryset is built once (``_UNREAD_BY_ROOM``):
    building it took three times as long as running it.
    """
    return _UNREAD_BY_ROOM.rows(user_id=user_id)


def _unread_by_room_queryset(user_id: int):
    return (
        Membership.objects.filter(user_id=user_id)
        .annotate(
            slug=F("room__slug"),
            unread=_capped_unread(OuterRef("room_id"), OuterRef("last_read_message_id"), user_id),
            latest=Coalesce(
                Subquery(
                    Message.objects.filter(room_id=OuterRef("room_id"))
                    .order_by("-id")
                    .values("id")[:1]
                ),
                Value(0),
            ),
        )
        .order_by("room_id")
        .values_list("room_id", "slug", "unread", "latest")
    )


_UNREAD_BY_ROOM = PrebuiltQuery(_unread_by_room_queryset)


class _CappedCount(Subquery):
    """``COUNT(*)`` of a sliced subquery: the database stops reading at the slice's end."""

    template = "(SELECT COUNT(*) FROM (%(subquery)s) AS capped)"
    output_field = IntegerField()


def _capped_unread(room_id, last_read, user_id: int) -> _CappedCount:
    """The unread messages by others after ``last_read`` in ``room_id``, up to the cap."""
    return _CappedCount(
        Message.objects.filter(
            room_id=room_id, id__gt=Coalesce(last_read, Value(0)), deleted_at__isnull=True
        )
        .exclude(author_id=user_id)
        .order_by()
        .values("id")[:UNREAD_CAP]
    )


def members_of(room: Room, *, limit: int = 100) -> tuple[list[Membership], int]:
    """The first ``limit`` memberships of the room with their users (moderators first, then
    by username), and how many there are in all."""
    memberships = Membership.objects.filter(room_id=room.pk)
    shown = list(
        memberships.select_related("user").order_by("-role", "user__username")[:limit]
    )  # "moderator" > "member"
    total = len(shown) if len(shown) < limit else memberships.count()
    return shown, total


def member_ids_named(room: Room, usernames: Iterable[str], *, exclude_user_id: int) -> list[int]:
    """Ids of the room's active members with one of these usernames (case-insensitive)."""
    names = {name.lower() for name in usernames}
    if not names:
        return []
    return list(
        Membership.objects.filter(room_id=room.pk, user__is_active=True)
        .exclude(user_id=exclude_user_id)
        .annotate(username_lower=Lower("user__username"))
        .filter(username_lower__in=names)
        .order_by("user_id")
        .values_list("user_id", flat=True)
    )


def latest_message_id(room_id: int) -> int:
    """The highest message id of the room, 0 if it has none: where a fresh page resumes."""
    latest = (
        Message.objects.filter(room_id=room_id).order_by("-id").values_list("id", flat=True).first()
    )
    return latest or 0


def room_history(
    room: Room, *, before: int | None = None, limit: int = HISTORY_PAGE_SIZE
) -> tuple[list[Message], bool]:
    """Up to ``limit`` messages before the id ``before`` (or the latest), oldest first, and
    whether older ones exist.

    Deleted messages are included (``deleted_at`` set, body empty): pages show where they
    were. Each message has its ``author`` and ``room`` loaded. ``limit`` must be 1 to
    ``HISTORY_MAX_LIMIT``.
    """
    if not 1 <= limit <= HISTORY_MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {HISTORY_MAX_LIMIT}, not {limit}")
    messages = Message.objects.filter(room_id=room.pk).select_related("author").order_by("-id")
    if before is not None:
        messages = messages.filter(id__lt=before)
    page = list(messages[: limit + 1])  # one more than asked: is there an older page?
    has_more = len(page) > limit
    page = page[:limit]
    page.reverse()
    for message in page:
        message.room = room
    attach_answer_states(page)
    return page, has_more


async def aroom_history(
    room: Room, *, before: int | None = None, limit: int = HISTORY_PAGE_SIZE
) -> tuple[list[Message], bool]:
    """``room_history`` for consumers (see db_call)."""
    return await db_call(room_history, room, before=before, limit=limit)


@dataclass(eq=False)
class JoiningPage:
    """The latest page of a room, shared by the sockets that join it at the same moment.

    Read-only for them, except ``payloads`` and ``frame``: the first socket to send the
    page builds them (``chat.outbox.RoomOutbox.start``) and the others send the same
    frame, instead of encoding 50 messages each (building the frame was half of a join's
    time on the event loop: py-spy, docs/benchmarks.md).
    """

    messages: list[Message]
    has_more: bool
    payloads: list[dict] | None = None
    frame: str | None = None


def joining_page(room: Room) -> JoiningPage:
    return JoiningPage(*room_history(room))


async def ajoining_history(room: Room) -> JoiningPage:
    """``room_history``'s latest page for a socket that has just subscribed to the room.

    Shared with the sockets joining the same room at the same moment, all subscribed
    before the read starts (``streamsite.streaming.shared_reads``): a crowd arriving in a
    room costs a few reads, not one each.
    """
    return await shared_reads().read(("chat.room_history", room.pk), joining_page, room)


def messages_page_after(room_id: int, after_id: int, limit: int) -> list[Message]:
    """Up to ``limit`` of the room's messages with an id above ``after_id``, oldest first."""
    page = list(
        Message.objects.filter(room_id=room_id, id__gt=after_id)
        .select_related("author", "room")
        .order_by("id")[:limit]
    )
    attach_answer_states(page)
    return page


async def messages_after(
    room_id: int, after_id: int, *, page_size: int = 500
) -> AsyncIterator[Message]:
    """Yield the room's messages with an id above ``after_id``, oldest first (resume).

    Page by page (keyset on ``(room, id)``), each page one query on the shared pool with
    its connection released: nothing is held between pages, so a socket replaying to a
    slow client pins neither a thread nor a connection, and there is no cursor to leak if
    it leaves mid-way. Deleted messages are included, as in ``room_history``.
    """
    pages = keyset_pages(partial(messages_page_after, room_id), after_id, page_size=page_size)
    async with aclosing(pages):
        async for message in pages:
            yield message


async def messages_for_export(
    room_id: int, *, chunk_size: int = 2000, up_to: int | None = None
) -> AsyncIterator[dict]:
    """Yield every message of the room as a ``values()`` row (``EXPORT_FIELDS``), oldest first
    (with ``up_to``, those with an id up to it: the room as it was when an export began).

    Rows, not model instances: the export's memory stays flat. A deleted message's body is
    empty; the caller leaves it out. A row showing an assistant's answer also has its
    ``answer_state`` (its text, status), read once per ``chunk_size`` rows.
    """
    messages = Message.objects.filter(room_id=room_id)
    if up_to is not None:
        messages = messages.filter(id__lte=up_to)
    rows = astream(messages.order_by("id").values(*EXPORT_FIELDS), chunk_size=chunk_size)
    batch: list[dict] = []
    async with aclosing(rows):
        async for row in rows:
            batch.append(row)
            if len(batch) >= chunk_size:
                for ready in await _with_answer_states(batch):
                    yield ready
                batch = []
    for ready in await _with_answer_states(batch):
        yield ready


async def _with_answer_states(rows: list[dict]) -> list[dict]:
    answers = {
        row["assistant_answer_id"]
        for row in rows
        if row["assistant_answer_id"] is not None and row["deleted_at"] is None
    }
    if answers:
        states = await db_call(answer_states, answers)
        for row in rows:
            if row["assistant_answer_id"] in answers and row["deleted_at"] is None:
                row["answer_state"] = states.get(row["assistant_answer_id"])
    return rows
