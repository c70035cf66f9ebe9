"""A room's message ids are in commit order: a client resuming "after N" skips nothing.

Real transactions on PostgreSQL, each in a thread with its own connection, ordered by
events and by what ``pg_stat_activity`` shows (``streamsite.testing.concurrency``).
"""

import uuid

import pytest
from asgiref.sync import async_to_sync
from django.core.exceptions import PermissionDenied
from django.db import connection

from chat import selectors, services
from chat.models import Message, Room
from chat.tests.factories import post, room_with
from streamsite.testing.concurrency import (
    ids_resumed_across_out_of_order_commits,
    second_started_while_first_uncommitted,
)
from streamsite.testing.services import skip_or_fail

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _postgresql_only():
    if connection.vendor != "postgresql":
        skip_or_fail("row locks between connections need PostgreSQL")


def resumed(room):
    """What a socket's ``resume`` sends: the ids ``chat.selectors.messages_after`` yields."""

    async def ids_after(after: int) -> list[int]:
        return [message.pk async for message in selectors.messages_after(room.pk, after)]

    return async_to_sync(ids_after)


def send(user, room, body: str):
    """A ``message.send`` of ``user``: the id it was acked with."""
    return lambda: post(user, room, body).pk


def test_a_client_resuming_between_two_sends_committing_out_of_order_gets_both(user, other_user):
    """Regression (issue #13: two sends committing in the opposite order of their ids): the
    send that drew the lower id committed last, so a client that resumed in between saw
    only the higher one, resumed after it and never got the lower one. Now the second send
    waits for the first one's commit before it draws its id."""
    room = room_with("lobby", members=[user, other_user])
    start = post(user, room, "before").pk
    first, second, seen = ids_resumed_across_out_of_order_commits(
        send(user, room, "drew its id first"),
        # Another author: the two sends share no row but the room's.
        send(other_user, room, "started second"),
        resumed(room),
        after=start,
    )
    assert first < second
    assert sorted(seen) == seen == [first, second]


def test_an_assistant_answer_stored_with_its_question_keeps_commit_order(user, other_user):
    """The question and the answer's message draw their ids in one transaction under the
    room's lock: a send racing them gets an id after both, or both after it."""
    room = room_with("lobby", members=[user, other_user], assistant=True)
    first, second, seen = ids_resumed_across_out_of_order_commits(
        send(user, room, "@assistant hello?"),
        send(other_user, room, "meanwhile"),
        resumed(room),
        after=0,
    )
    answer = Message.objects.get(room=room, assistant_answer_id__isnull=False).pk
    assert seen == [first, answer, second]


def test_sends_to_other_rooms_do_not_wait(user):
    """The lock is the room's: a send elsewhere commits while this one is still open."""
    here, elsewhere = room_with("here", members=[user]), room_with("elsewhere", members=[user])
    with second_started_while_first_uncommitted(
        send(user, here, "open"), send(user, elsewhere, "free")
    ) as results:
        assert "second" in results  # committed, not waiting


def test_a_room_deleted_while_a_send_is_open_waits_for_it(user):
    room = room_with("doomed", members=[user])
    with second_started_while_first_uncommitted(
        send(user, room, "last words"), lambda: services.room_delete(room=room)
    ) as results:
        assert "second" not in results  # the delete waits for the send's commit
    assert not Room.objects.filter(pk=room.pk).exists()
    assert not Message.objects.filter(room_id=room.pk).exists()


def test_a_send_to_a_room_being_deleted_is_refused_after_the_delete(user):
    """Regression guard: without a lock order the send could hold the room while waiting on
    a membership the delete removes, and the delete wait on the room: a deadlock."""
    room = room_with("doomed", members=[user])
    # The socket's own copy: deleting an instance sets its pk to None.
    sockets_room = Room.objects.get(pk=room.pk)
    with (
        pytest.raises(PermissionDenied, match="no longer exists"),
        second_started_while_first_uncommitted(
            lambda: services.room_delete(room=room),
            lambda: services.message_post(
                user=user, room=sockets_room, client_id=uuid.uuid4(), body="too late"
            ),
        ) as results,
    ):
        assert "second" not in results
    assert not Message.objects.filter(room_id=room.pk).exists()
