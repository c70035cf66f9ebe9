"""Event shapes: what crosses the channel layer must be JSON primitives, as documented."""

import json
import uuid

import pytest
from django.utils import timezone

from chat import events
from chat.models import Message

pytestmark = pytest.mark.django_db


def test_room_key_is_built_from_the_id_only():
    assert events.room_key(42) == "chat.room.42"
    assert events.room_key("7") == "chat.room.7"
    with pytest.raises(ValueError):
        events.room_key("lobby")  # never user text in a group name


def test_message_payload_is_the_protocol_shape_and_json_safe(lobby, user):
    client_id = uuid.uuid4()
    message = Message.objects.create(room=lobby, author=user, client_id=client_id, body="hi")
    payload = events.message_payload(message)
    assert payload == {
        "id": message.pk,
        "client_id": str(client_id),
        "room": "lobby",
        "author": {"id": user.pk, "username": "alice"},
        "body": "hi",
        "created_at": message.created_at.isoformat(),
    }
    assert tuple(payload) == events.MESSAGE_FIELDS
    assert json.loads(json.dumps(payload)) == payload


def test_deleted_message_payload_has_no_text(lobby, user):
    message = Message(
        pk=5, room=lobby, author=user, client_id=uuid.uuid4(), body="", deleted_at=timezone.now()
    )
    payload = events.message_payload(message)
    assert (payload["body"], payload["deleted"]) == ("", True)


def test_event_builders():
    payload = {"id": 1}
    assert events.message_event(payload) == {"kind": "message", "message": payload}
    assert events.message_deleted_event("9") == {"kind": "message.deleted", "id": 9}
    assert events.member_removed_event(3) == {"kind": "member.removed", "user_id": 3}


def test_an_answer_s_payload_carries_its_text_status_and_position(lobby, user):
    message = Message(
        pk=6, room=lobby, author=user, client_id=uuid.uuid4(), body="", assistant_answer_id=40
    )
    message.answer_state = {"status": "failed", "text": "Hé", "position": 2, "error": "boom"}
    payload = events.message_payload(message)
    assert payload["assistant"] is True and payload["author"]["username"] == "alice"
    assert (payload["body"], payload["status"], payload["position"], payload["error"]) == (
        "Hé",
        "failed",
        2,
        "boom",
    )
    del message.answer_state  # the assistant no longer has it
    payload = events.message_payload(message)
    assert (payload["status"], payload["body"]) == ("failed", "")
    message.deleted_at = timezone.now()
    payload = events.message_payload(message)
    assert payload["deleted"] is True and payload["assistant"] is True
    assert "status" not in payload and payload["body"] == ""
    assert events.message_event(payload, answer_id=40) == {
        "kind": "message",
        "message": payload,
        "answer": 40,
    }
