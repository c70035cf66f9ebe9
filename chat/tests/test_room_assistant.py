"""The assistant as a participant of rooms (chat.room_assistant, through message_post).

The assistant's side (limits, storage, events) is tested in assistant/tests; here, what the
chat app does with it: which messages ask, the answer's message, refusals, who may turn
it on and stop it. No generation runs in these synchronous tests (no server loop).
"""

import uuid

import pytest
from django.core.exceptions import PermissionDenied

from assistant import limits as assistant_limits
from assistant import selectors as assistant_selectors
from assistant import services as assistant_services
from assistant.events import Route
from assistant.models import Answer
from chat import room_assistant, services
from chat.events import room_key
from chat.models import Membership, Message
from chat.tests.factories import post, room_with

pytestmark = pytest.mark.django_db


@pytest.fixture
def room(user, moderator):
    """A public room with the assistant, moderated by ``moderator``; alice is a member."""
    return room_with("lobby", members=[user], moderators=[moderator], assistant=True)


def answer_state(message: Message) -> dict:
    return assistant_selectors.answer_states([message.assistant_answer_id])[
        message.assistant_answer_id
    ]


def answers_in(room) -> list[Message]:
    return list(Message.objects.filter(room=room, assistant_answer_id__isnull=False))


@pytest.mark.parametrize(
    ("body", "asks"),
    [
        ("@assistant what is SSE?", True),
        ("Hey @Assistant, explain resume", True),
        ("thanks (@ASSISTANT).", True),
        ("is this right @assistant", True),
        ("@assistantbot hello", False),
        ("mail me@assistant.example", False),
        ("@assistant.bot hello", False),
        ("@assistant_x hi", False),
        ("no mention of the assistant", False),
    ],
)
def test_which_messages_ask_the_assistant(body, asks):
    assert room_assistant.mentions_assistant(body) is asks


def test_a_mention_stores_the_answer_as_the_next_message_and_publishes_both(
    room, user, capture_published
):
    with capture_published() as published:
        message, created = services.message_post(
            user=user, room=room, client_id=uuid.uuid4(), body="@assistant what is SSE?"
        )
    assert created and message.assistant_unavailable == ""
    [answer] = answers_in(room)
    assert answer.pk > message.pk and answer.author == user and answer.body == ""
    assert answer_state(answer) == {
        "status": "streaming",
        "text": "",
        "position": 0,
        "error": "",
        "model": answer_state(answer)["model"],
    }
    room_events = [event for key, event in published if key == room_key(room.pk)]
    assert [event["message"]["id"] for event in room_events] == [message.pk, answer.pk]
    question, shown = (event["message"] for event in room_events)
    assert "assistant" not in question
    assert room_events[1]["answer"] == answer.assistant_answer_id
    assert shown["assistant"] is True
    assert (shown["body"], shown["status"], shown["position"], shown["error"]) == (
        "",
        "streaming",
        0,
        None,
    )
    assert shown["author"] == {"id": user.pk, "username": "alice"}
    # The asker has read their own question and its answer's message.
    assert Membership.objects.get(room=room, user=user).last_read_message_id == answer.pk


def test_the_question_is_the_askers_message(room, user):
    post(user, room, "@assistant  how do   I resume?")
    [answer] = answers_in(room)
    asked = Answer.objects.select_related("question").get(pk=answer.assistant_answer_id)
    assert asked.question.text == "@assistant  how do   I resume?"
    assert asked.owner == user and asked.conversation.room_id == room.pk


def test_in_a_room_without_the_assistant_a_mention_is_only_text(user, capture_published):
    room = room_with("quiet", members=[user])
    with capture_published() as published:
        post(user, room, "@assistant are you there?")
    assert answers_in(room) == []
    assert len(published) == 1


def test_a_socket_s_old_room_object_does_not_hide_the_setting(user, staff_user):
    stale = room_with("later", members=[user])
    room_assistant.room_assistant_set(user=staff_user, room=stale, enabled=True)
    stale.assistant_enabled = False  # as a socket opened before the change still has it
    post(user, stale, "@assistant now?")
    assert len(answers_in(stale)) == 1


def test_a_retried_send_starts_no_second_answer(room, user):
    client_id = uuid.uuid4()
    first, _ = services.message_post(user=user, room=room, client_id=client_id, body="@assistant q")
    again, created = services.message_post(
        user=user, room=room, client_id=client_id, body="@assistant q"
    )
    assert again.pk == first.pk and not created and again.assistant_unavailable == ""
    assert len(answers_in(room)) == 1


def test_over_the_concurrency_limit_the_message_is_kept_and_the_asker_told_why(
    room, user, settings, capture_published
):
    settings.ASSISTANT_MAX_CONCURRENT = 1
    post(user, room, "@assistant first")
    with capture_published() as published:
        message, created = services.message_post(
            user=user, room=room, client_id=uuid.uuid4(), body="@assistant second"
        )
    assert created and Message.objects.filter(pk=message.pk, body="@assistant second").exists()
    assert "still answering" in message.assistant_unavailable
    assert len(answers_in(room)) == 1
    assert [event["message"]["id"] for _, event in published] == [message.pk]


def test_over_the_daily_budget_the_message_is_kept_and_the_asker_told_why(room, user, settings):
    settings.ASSISTANT_DAILY_TOKENS = 10
    assistant_limits.usage_add(user_id=user.pk, tokens=10)
    message, created = services.message_post(
        user=user, room=room, client_id=uuid.uuid4(), body="@assistant q"
    )
    assert created and "budget" in message.assistant_unavailable
    assert "UTC" in message.assistant_unavailable
    assert answers_in(room) == []


def test_a_question_the_assistant_cannot_take_keeps_the_message(room, user, settings):
    settings.ASSISTANT_MAX_PROMPT_LENGTH = 5
    message, created = services.message_post(
        user=user, room=room, client_id=uuid.uuid4(), body="@assistant far too long"
    )
    assert created and "longer than 5" in message.assistant_unavailable
    assert answers_in(room) == []


# Turning it on and off ---------------------------------------------------------------------


def test_moderators_and_staff_turn_the_assistant_on_and_off(room, user, moderator, staff_user):
    with pytest.raises(PermissionDenied):
        room_assistant.room_assistant_set(user=user, room=room, enabled=False)
    assert room_assistant.room_assistant_set(user=moderator, room=room, enabled=False)
    assert not room_assistant.room_assistant_set(user=moderator, room=room, enabled=False)
    room.refresh_from_db()
    assert room.assistant_enabled is False
    assert room_assistant.room_assistant_set(user=staff_user, room=room, enabled=True)
    room.refresh_from_db()
    assert room.assistant_enabled is True


# Stop ------------------------------------------------------------------------------------


@pytest.fixture
def asked(room, user):
    """The message showing the assistant's answer to alice's question."""
    post(user, room, "@assistant explain")
    return Message.objects.select_related("room").get(room=room, assistant_answer_id__isnull=False)


@pytest.mark.parametrize("who", ["asker", "moderator", "staff"])
def test_who_asked_the_moderators_and_staff_may_stop_an_answer(
    asked, user, moderator, staff_user, who, capture_published
):
    stopper = {"asker": user, "moderator": moderator, "staff": staff_user}[who]
    with capture_published() as published:
        answer = room_assistant.message_answer_stop(user=stopper, message=asked, position=0)
    assert answer.status == "stopped" and answer.position == 0
    done = [event for key, event in published if key == room_key(asked.room_id)]
    assert done == [
        {
            "kind": "assistant.done",
            "message": asked.pk,
            "answer": asked.assistant_answer_id,
            "status": "stopped",
            "position": 0,
            "finish_reason": "stopped",
            "error": None,
        }
    ]


def test_other_members_may_not_stop_an_answer(asked, other_user):
    Membership.objects.create(room=asked.room, user=other_user)
    with pytest.raises(PermissionDenied):
        room_assistant.message_answer_stop(user=other_user, message=asked)
    assert answer_state(asked)["status"] == "streaming"


def test_an_asker_who_can_no_longer_read_the_private_room_may_not_stop(user):
    room = room_with("secret", private=True, members=[user], assistant=True)
    post(user, room, "@assistant q")
    asked = Message.objects.select_related("room").get(room=room, assistant_answer_id__isnull=False)
    Membership.objects.filter(room=room, user=user).delete()
    with pytest.raises(PermissionDenied):
        room_assistant.message_answer_stop(user=user, message=asked)


def test_only_an_answer_can_be_stopped(room, user):
    message = post(user, room, "just text")
    with pytest.raises(Message.DoesNotExist):
        room_assistant.message_answer_stop(user=user, message=message)
    with pytest.raises(Message.DoesNotExist):
        room_assistant.message_answer_stop_by_id(user=user, room=room, message_id=10**9)


def test_deleting_the_asking_message_erases_the_question_from_the_context(
    room, user, moderator, settings
):
    settings.ASSISTANT_MAX_CONCURRENT = 5
    asking = post(user, room, "@assistant something regrettable")
    first = Answer.objects.select_related("question").get(question__room_message_id=asking.pk)
    assistant_services.answer_finish(answer_id=first.pk, status=Answer.Status.COMPLETE)
    Answer.objects.filter(pk=first.pk).update(text="an answer to it")
    post(user, room, "@assistant and now?")
    services.message_delete(user=moderator, message=asking)
    first.question.refresh_from_db()
    assert first.question.text == ""
    latest = Answer.objects.select_related("question").latest("id")
    sent = assistant_selectors.prompt_messages(latest)
    assert "regrettable" not in str(sent) and "an answer to it" not in str(sent)
    assert sent[-1] == {"role": "user", "content": "@assistant and now?"}


def test_deleting_an_answer_stops_and_erases_it(asked, moderator):
    answer = Answer.objects.get(pk=asked.assistant_answer_id)
    assistant_services.answer_append(
        answer_id=answer.pk, route=Route.of(answer), start=0, text="Something regrettable"
    )
    services.message_delete(user=moderator, message=asked)
    state = answer_state(asked)
    assert (state["status"], state["text"], state["position"]) == ("stopped", "", 0)
