"""Reads: room lists with unread counts, history pages, resume in pages, export rows."""

import asyncio
import uuid
from contextlib import aclosing

import pytest
from asgiref.sync import sync_to_async
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from chat import selectors, services
from chat.conf import HISTORY_MAX_LIMIT
from chat.models import Membership, Message
from chat.tests.factories import add_messages, room_with

pytestmark = pytest.mark.django_db


def unread_by_slug(user) -> dict[str, int | None]:
    return {room.slug: room.unread for room in selectors.rooms_for(user)}


# rooms_for -----------------------------------------------------------------------------------


def test_rooms_for_lists_public_rooms_and_the_users_private_ones(
    make_room, user, other_user, staff_user
):
    make_room("lobby")
    make_room("mine", private=True, members=[user])
    make_room("theirs", private=True, members=[other_user])
    assert list(unread_by_slug(user)) == ["lobby", "mine"]  # by name
    assert list(unread_by_slug(other_user)) == ["lobby", "theirs"]
    assert list(unread_by_slug(staff_user)) == ["lobby", "mine", "theirs"]


def test_unread_counts_others_messages_after_the_read_position(
    make_room, user, other_user, staff_user
):
    room = make_room("ops", members=[user, other_user])
    read = add_messages(room, other_user, 2)
    Membership.objects.filter(user=user).update(last_read_message_id=read[-1].pk)
    add_messages(room, other_user, 3)  # unread
    add_messages(room, user, 2)  # their own: never unread
    add_messages(room, other_user, 1, body="", deleted_at=timezone.now())  # deleted
    assert unread_by_slug(user) == {"ops": 3}
    # Nothing read yet: everything by others that is not deleted.
    assert unread_by_slug(other_user) == {"ops": 2}
    assert unread_by_slug(staff_user) == {"ops": None}  # sees it, has not joined it


def test_rooms_not_joined_have_no_unread_count_and_no_role(lobby, user, other_user):
    add_messages(lobby, other_user, 3)
    (room,) = selectors.rooms_for(user)
    assert (room.role, room.unread) == (None, None)
    (room,) = selectors.rooms_for(other_user)
    assert (room.role, room.unread) == (None, None)  # posting without the service joins nobody


def test_rooms_for_is_one_query_however_many_rooms(make_user, user):
    def queries_for(room_count: int) -> int:
        other = make_user(f"writer{room_count}")
        for n in range(room_count):
            room = room_with(f"r{room_count}-{n}", private=n % 2 == 0, members=[user])
            add_messages(room, other, 3)
        with CaptureQueriesContext(connection) as queries:
            rooms = selectors.rooms_for(user)
            assert all(room.unread == 3 for room in rooms)
        return len(queries.captured_queries)

    assert queries_for(1) == 1
    assert queries_for(10) == 1


def test_unread_total_sums_the_users_rooms_in_one_query(make_room, user, other_user):
    """The header's Chat count: others' unread messages in every room the user has joined."""
    ops = make_room("ops", members=[user, other_user])
    read = add_messages(ops, other_user, 2)
    Membership.objects.filter(user=user, room=ops).update(last_read_message_id=read[-1].pk)
    add_messages(ops, other_user, 3)  # unread
    add_messages(ops, user, 2)  # their own
    add_messages(ops, other_user, 1, body="", deleted_at=timezone.now())  # deleted
    dev = make_room("dev", private=True, members=[user, other_user])
    add_messages(dev, other_user, 4)  # nothing read yet
    add_messages(make_room("lobby"), other_user, 5)  # not joined: not counted
    with CaptureQueriesContext(connection) as queries:
        assert selectors.unread_total(user) == 7
    assert len(queries.captured_queries) == 1
    assert selectors.unread_total(other_user) == 2


# room_history --------------------------------------------------------------------------------


def test_history_is_the_latest_page_oldest_first(lobby, user):
    messages = add_messages(lobby, user, 7)
    page, has_more = selectors.room_history(lobby, limit=3)
    assert [m.pk for m in page] == [m.pk for m in messages[-3:]]
    assert has_more


def test_history_pages_back_with_before_until_there_is_no_more(lobby, user):
    messages = add_messages(lobby, user, 7)
    seen, before, has_more = [], None, True
    while has_more:
        page, has_more = selectors.room_history(lobby, before=before, limit=3)
        seen = page + seen
        before = page[0].pk
    assert [m.pk for m in seen] == [m.pk for m in messages]
    page, has_more = selectors.room_history(lobby, before=messages[3].pk, limit=3)
    assert ([m.pk for m in page], has_more) == ([m.pk for m in messages[:3]], False)


def test_history_of_exactly_one_page_has_no_more(lobby, user):
    add_messages(lobby, user, 3)
    assert selectors.room_history(lobby, limit=3)[1] is False


def test_history_of_an_empty_room(lobby):
    assert selectors.room_history(lobby) == ([], False)


def test_history_is_only_the_rooms_and_loads_authors_in_one_query(make_room, user, other_user):
    lobby, elsewhere = make_room("lobby"), make_room("elsewhere")
    add_messages(elsewhere, user, 2)
    mine = add_messages(lobby, other_user, 2)
    with CaptureQueriesContext(connection) as queries:
        page, _ = selectors.room_history(lobby)
        usernames = [(m.author.username, m.room.slug) for m in page]
    assert [m.pk for m in page] == [m.pk for m in mine]
    assert usernames == [("bob", "lobby")] * 2
    assert len(queries.captured_queries) == 1


def test_history_includes_deleted_messages_without_text(lobby, user, staff_user):
    message = services.message_post(
        user=user, room=lobby, client_id="8f7c3c2e-0000-4000-8000-000000000001", body="x"
    )[0]
    services.message_delete(user=staff_user, message=message)
    (shown,), _ = selectors.room_history(lobby)
    assert (shown.pk, shown.body, shown.is_deleted) == (message.pk, "", True)


def test_history_and_resume_pages_carry_the_answers_states_in_one_more_query(user, settings):
    settings.ASSISTANT_MAX_CONCURRENT = 3
    room = room_with("lobby", members=[user], assistant=True)
    for _ in range(3):
        services.message_post(user=user, room=room, client_id=uuid.uuid4(), body="@assistant q")
    with CaptureQueriesContext(connection) as queries:
        page, _ = selectors.room_history(room)
    # The messages, the answers' states, the streaming ones' parts: as many for any number.
    assert len(queries.captured_queries) == 3
    answers = [m for m in page if m.is_assistant_answer]
    assert len(answers) == 3 and len(page) == 6
    assert all(m.answer_state["status"] == "streaming" for m in answers)
    assert all(not hasattr(m, "answer_state") for m in page if not m.is_assistant_answer)
    resumed = selectors.messages_page_after(room.pk, 0, 10)
    assert [m.answer_state for m in resumed if m.is_assistant_answer] == [
        m.answer_state for m in answers
    ]


@pytest.mark.parametrize("limit", [0, -1, HISTORY_MAX_LIMIT + 1])
def test_history_refuses_a_limit_out_of_range(lobby, limit):
    with pytest.raises(ValueError):
        selectors.room_history(lobby, limit=limit)


# members -------------------------------------------------------------------------------------


def test_members_of_lists_moderators_first(make_room, user, other_user, moderator):
    room = make_room("ops", members=[other_user, user], moderators=[moderator])
    members, total = selectors.members_of(room)
    assert ([m.user.username for m in members], total) == (["mod", "alice", "bob"], 3)
    members, total = selectors.members_of(room, limit=2)
    assert ([m.user.username for m in members], total) == (["mod", "alice"], 3)


def test_member_ids_named(make_room, user, other_user, make_user):
    inactive = make_user("gone", is_active=False)
    room = make_room("ops", members=[user, other_user, inactive])
    named = selectors.member_ids_named
    assert named(room, ["BOB", "alice", "gone", "x"], exclude_user_id=user.pk) == [other_user.pk]
    assert named(room, [], exclude_user_id=user.pk) == []


# messages_after (resume) ---------------------------------------------------------------------


async def collect(room_id: int, after_id: int, **options) -> list[Message]:
    async with aclosing(selectors.messages_after(room_id, after_id, **options)) as messages:
        return [message async for message in messages]


@pytest.mark.django_db(transaction=True)
async def test_messages_after_yields_the_rest_in_order_in_pages(make_room, make_user, monkeypatch):
    def setup():
        author = make_user("writer")
        room, other = make_room("ops"), make_room("other")
        add_messages(other, author, 3)
        return room, add_messages(room, author, 7)

    room, messages = await sync_to_async(setup)()
    pages = []
    real_page = selectors.messages_page_after

    def counting_page(room_id, after_id, limit):
        page = real_page(room_id, after_id, limit)
        pages.append([m.pk for m in page])
        return page

    monkeypatch.setattr(selectors, "messages_page_after", counting_page)
    resumed = await collect(room.pk, messages[1].pk, page_size=2)
    assert [m.pk for m in resumed] == [m.pk for m in messages[2:]]
    assert [len(page) for page in pages] == [2, 2, 1]  # keyset pages, last one short
    assert {(m.room.slug, m.author.username) for m in resumed} == {("ops", "writer")}
    assert await collect(room.pk, messages[-1].pk) == []


@pytest.mark.django_db(transaction=True)
async def test_messages_after_stops_when_the_consumer_does(make_room, make_user, monkeypatch):
    def setup():
        room = make_room("ops")
        return room, add_messages(room, make_user("writer"), 6)

    room, messages = await sync_to_async(setup)()
    calls = []
    real_page = selectors.messages_page_after
    monkeypatch.setattr(
        selectors, "messages_page_after", lambda *args: calls.append(args) or real_page(*args)
    )
    async with aclosing(selectors.messages_after(room.pk, 0, page_size=2)) as resumed:
        async for message in resumed:
            assert message.pk == messages[0].pk
            break
    assert len(calls) == 1  # no page fetched past what was used


# Export rows ---------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_export_rows_are_the_rooms_messages_oldest_first(make_room, make_user):
    def setup():
        author = make_user("writer")
        room, other = make_room("ops"), make_room("other")
        add_messages(other, author, 2)
        return room, add_messages(room, author, 5)

    room, messages = await sync_to_async(setup)()
    async with aclosing(selectors.messages_for_export(room.pk, chunk_size=2)) as rows:
        exported = [row async for row in rows]
    assert [row["id"] for row in exported] == [m.pk for m in messages]
    assert set(exported[0]) == set(selectors.EXPORT_FIELDS)
    assert exported[0]["author__username"] == "writer"


# ajoining_room -------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_sockets_joining_a_room_together_share_one_read_of_it(make_room, monkeypatch):
    room = await sync_to_async(make_room)("crowded")
    reads = []
    real = selectors.room_by_slug

    def counted(slug):
        reads.append(slug)
        return real(slug)

    monkeypatch.setattr(selectors, "room_by_slug", counted)
    rooms = await asyncio.gather(*(selectors.ajoining_room("crowded") for _ in range(5)))
    assert reads == ["crowded"]
    assert all(found is rooms[0] for found in rooms) and rooms[0].pk == room.pk
    assert await selectors.ajoining_room("no-such-room") is None
