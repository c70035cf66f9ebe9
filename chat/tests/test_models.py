"""The chat models: what the database itself guarantees, and the field validators."""

import uuid

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from chat.models import Membership, Message, Room
from chat.tests.factories import add_messages

pytestmark = pytest.mark.django_db


def test_room_defaults_and_str(make_room):
    room = Room.objects.create(slug="general", name="General")
    assert (room.is_private, str(room)) == (False, "General")
    assert room.created_at is not None


def test_room_slug_is_unique(make_room):
    make_room("dup")
    with pytest.raises(IntegrityError), transaction.atomic():
        Room.objects.create(slug="dup", name="Another")


def test_a_user_is_a_member_of_a_room_once(lobby, user):
    membership = Membership.objects.create(room=lobby, user=user)
    assert (membership.role, membership.is_moderator) == ("member", False)
    assert membership.last_read_message_id is None
    with pytest.raises(IntegrityError), transaction.atomic():
        Membership.objects.create(room=lobby, user=user, role="moderator")


def test_client_id_is_unique_per_room_and_author(make_room, user, other_user):
    """The idempotency key: one message per (room, author, client_id)."""
    lobby, other_room = make_room("lobby"), make_room("other")
    client_id = uuid.uuid4()
    Message.objects.create(room=lobby, author=user, client_id=client_id, body="first")
    # The same key from another author, or in another room, is another message.
    Message.objects.create(room=lobby, author=other_user, client_id=client_id, body="b")
    Message.objects.create(room=other_room, author=user, client_id=client_id, body="c")
    with pytest.raises(IntegrityError), transaction.atomic():
        Message.objects.create(room=lobby, author=user, client_id=client_id, body="again")


@pytest.mark.parametrize(
    ("body", "deleted"),
    [pytest.param("", False, id="live-without-text"), pytest.param("kept", True, id="deleted")],
)
def test_only_deleted_messages_have_no_text(lobby, user, body, deleted):
    """A deleted message's text cannot survive in the database, nor a live one be empty."""
    with pytest.raises(IntegrityError), transaction.atomic():
        Message.objects.create(
            room=lobby,
            author=user,
            client_id=uuid.uuid4(),
            body=body,
            deleted_at=timezone.now() if deleted else None,
        )


def test_messages_are_ordered_by_id(lobby, user):
    messages = add_messages(lobby, user, 3)
    assert list(Message.objects.all()) == messages
    assert not messages[0].is_deleted


def test_room_and_id_are_indexed_together():
    """History, resume and unread counts all read a room's messages by id."""
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, Message._meta.db_table)
    index = constraints["chat_message_room_id"]
    assert index["columns"] == ["room_id", "id"] and index["index"]


def full_clean(room, user, body: str) -> None:
    Message(room=room, author=user, client_id=uuid.uuid4(), body=body).full_clean()


def test_body_length_follows_the_setting(lobby, user, settings):
    settings.CHAT_MAX_MESSAGE_LENGTH = 10
    full_clean(lobby, user, "x" * 10)
    with pytest.raises(ValidationError) as error:
        full_clean(lobby, user, "x" * 11)
    assert [e.code for e in error.value.error_dict["body"]] == ["too_long"]


def test_body_length_defaults_to_4000(lobby, user, settings):
    del settings.CHAT_MAX_MESSAGE_LENGTH  # as if settings.py did not set it
    full_clean(lobby, user, "x" * 4000)
    with pytest.raises(ValidationError):
        full_clean(lobby, user, "x" * 4001)


def test_body_cannot_hold_nul(lobby, user):
    """Regression guard: PostgreSQL text cannot store NUL (the insert would be a 500)."""
    with pytest.raises(ValidationError) as error:
        full_clean(lobby, user, "a\x00b")
    assert "body" in error.value.error_dict
