"""The assistant's writes: limits before anything is stored, text guarded by position, Stop."""

import datetime
import threading
import uuid

import pytest
from django.db import connection, transaction
from django.utils import timezone

from assistant import events, limits, selectors, services
from assistant.events import Route
from assistant.models import Answer, AnswerPart, DailyUsage, Question
from assistant.upstream.base import Usage
from notifications.events import user_key
from streamsite.testing.services import skip_or_fail

pytestmark = pytest.mark.django_db

Status = Answer.Status


def test_asking_stores_the_question_and_a_streaming_answer_then_publishes_the_turn(
    conversation, user, capture_published
):
    with capture_published() as published:
        asked = services.question_ask(
            user=user,
            conversation_id=conversation.pk,
            text="  What is SSE? ",
            client_id=uuid.uuid4(),
        )
    answer = asked.answer
    assert asked.created
    assert answer.status == Status.STREAMING and answer.text == "" and answer.position == 0
    assert answer.question.text == "What is SSE?"
    conversation.refresh_from_db()
    assert conversation.title == "What is SSE?"
    [(key, event), (owner_key, moved)] = published
    assert key == events.conversation_key(conversation.pk)
    assert event["kind"] == "turn" and event["answer"] == answer.pk
    assert event["question"]["text"] == "What is SSE?"
    # The owner's notification stream hears it moved (the home page's recent conversations).
    assert owner_key == user_key(user.pk)
    assert moved["event"] == "conversation" and moved["key"] == conversation.pk
    assert moved["data"] == {
        "id": conversation.pk,
        "title": "What is SSE?",
        "url": f"/assistant/{conversation.pk}/",
        "updated_at": conversation.updated_at.isoformat(),
    }


def test_a_repeated_client_id_returns_the_first_answer_and_stores_nothing(conversation, user):
    client_id = uuid.uuid4()
    first = services.question_ask(
        user=user, conversation_id=conversation.pk, text="once", client_id=client_id
    )
    again = services.question_ask(
        user=user, conversation_id=conversation.pk, text="once", client_id=client_id
    )
    assert not again.created and again.answer.pk == first.answer.pk
    assert Question.objects.count() == 1 and Answer.objects.count() == 1


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("   \n", "empty"),
        ("x\ud800", "not text"),
        ("a\x00b", "not text"),
        (5, "text"),
    ],
)
def test_bad_prompts_are_refused_before_anything_is_stored(conversation, user, text, reason):
    with pytest.raises(services.PromptInvalid, match=reason):
        services.question_ask(
            user=user, conversation_id=conversation.pk, text=text, client_id=uuid.uuid4()
        )
    assert not Question.objects.exists()


def test_a_prompt_over_the_limit_is_refused(conversation, user, settings):
    settings.ASSISTANT_MAX_PROMPT_LENGTH = 10
    with pytest.raises(services.PromptInvalid, match="longer than 10"):
        services.question_ask(
            user=user, conversation_id=conversation.pk, text="x" * 11, client_id=uuid.uuid4()
        )


def test_another_users_conversation_is_as_absent_as_a_missing_one(conversation, other_user):
    with pytest.raises(services.Conversation.DoesNotExist):
        services.question_ask(
            user=other_user, conversation_id=conversation.pk, text="hi", client_id=uuid.uuid4()
        )


def test_the_answer_over_the_concurrent_limit_is_refused_naming_a_running_one(ask, settings):
    settings.ASSISTANT_MAX_CONCURRENT = 2
    first = ask("one")
    ask("two")
    with pytest.raises(limits.AnswerLimitReached) as refused:
        ask("three")
    assert refused.value.running.pk == first.pk
    assert Question.objects.count() == 2
    services.answer_finish(answer_id=first.pk, status=Status.COMPLETE)
    assert ask("three").is_streaming


def test_a_spent_budget_is_refused_until_the_next_utc_midnight(ask, user, settings):
    settings.ASSISTANT_DAILY_TOKENS = 100
    DailyUsage.objects.create(user=user, day=timezone.now().date(), tokens=100)
    with pytest.raises(limits.BudgetExhausted) as refused:
        ask("too much")
    tomorrow = timezone.now().date() + datetime.timedelta(days=1)
    assert refused.value.resets_at == datetime.datetime.combine(
        tomorrow, datetime.time(), tzinfo=datetime.UTC
    )
    assert not Question.objects.exists()


def test_appending_stores_text_at_its_position_and_publishes_the_delta(ask, capture_published):
    answer = ask()
    with capture_published() as published:
        assert services.answer_append(
            answer_id=answer.pk, route=Route(answer.conversation_id), start=0, text="Hé😀"
        )
        assert services.answer_append(
            answer_id=answer.pk,
            route=Route(answer.conversation_id),
            start=3,
            text=" there",
            first_token_ms=12,
        )
    answer.refresh_from_db()
    assert answer.text == "" and answer.parts.count() == 2  # until it ends
    [answer] = selectors.with_text_so_far([answer])
    assert answer.text == "Hé😀 there" and answer.position == 9 and answer.first_token_ms == 12
    assert [event for _, event in published] == [
        {"kind": "delta", "answer": answer.pk, "start": 0, "position": 3, "text": "Hé😀"},
        {"kind": "delta", "answer": answer.pk, "start": 3, "position": 9, "text": " there"},
    ]


def test_appending_at_the_wrong_position_or_after_a_stop_changes_nothing(ask, user):
    answer = ask()
    append = {"answer_id": answer.pk, "route": Route(answer.conversation_id)}
    services.answer_append(**append, start=0, text="abc")
    assert not services.answer_append(**append, start=1, text="X")
    services.answer_stop(user=user, answer_id=answer.pk, position=2)
    assert not services.answer_append(**append, start=2, text="d")
    answer.refresh_from_db()
    assert answer.text == "ab" and answer.status == Status.STOPPED


def test_stop_cuts_the_text_where_the_client_was_and_signals_the_generating_process(
    ask, user, capture_published
):
    answer = ask()
    services.answer_append(
        answer_id=answer.pk, route=Route(answer.conversation_id), start=0, text="one two three"
    )
    with capture_published() as published:
        stopped = services.answer_stop(user=user, answer_id=answer.pk, position=7)
    assert stopped.status == Status.STOPPED and stopped.text == "one two" and stopped.position == 7
    kinds = {(key, event["kind"]) for key, event in published}
    assert kinds == {
        (events.conversation_key(answer.conversation_id), "done"),
        (events.control_key(answer.pk), "stop"),
    }
    done = next(event for _, event in published if event["kind"] == "done")
    assert done["status"] == "stopped" and done["position"] == 7


def test_stop_never_lengthens_and_is_idempotent(ask, user, capture_published):
    answer = ask()
    services.answer_append(
        answer_id=answer.pk, route=Route(answer.conversation_id), start=0, text="abc"
    )
    assert services.answer_stop(user=user, answer_id=answer.pk, position=99).position == 3
    with capture_published() as published:
        again = services.answer_stop(user=user, answer_id=answer.pk, position=1)
    assert again.position == 3 and again.text == "abc" and published == []


def test_only_the_owner_or_staff_may_stop(ask, other_user, staff_user):
    answer = ask()
    with pytest.raises(Answer.DoesNotExist):
        services.answer_stop(user=other_user, answer_id=answer.pk)
    assert services.answer_stop(user=staff_user, answer_id=answer.pk).status == Status.STOPPED


def test_finishing_records_usage_against_the_budget_once(ask, user, capture_published):
    answer = ask()
    with capture_published() as published:
        done = services.answer_finish(
            answer_id=answer.pk,
            status=Status.COMPLETE,
            finish_reason="stop",
            usage=Usage(prompt_tokens=9, completion_tokens=3),
        )
    assert done.status == Status.COMPLETE and done.total_tokens == 12
    assert published[0][1]["usage"] == {
        "prompt_tokens": 9,
        "completion_tokens": 3,
        "total_tokens": 12,
        "estimated": False,
    }
    assert services.answer_finish(answer_id=answer.pk, status=Status.FAILED) is None
    assert DailyUsage.objects.get(user=user).tokens == 12


def test_answers_whose_process_stopped_renewing_are_interrupted_keeping_their_text(
    ask, capture_published, settings
):
    settings.ASSISTANT_INTERRUPTED_AFTER_SECONDS = 15
    stale, fresh = ask("one"), ask("two")
    services.answer_append(
        answer_id=stale.pk, route=Route(stale.conversation_id), start=0, text="partial"
    )
    Answer.objects.filter(pk=stale.pk).update(
        alive_at=timezone.now() - datetime.timedelta(seconds=16)
    )
    with capture_published() as published:
        assert services.answers_interrupt_stale() == 1
    stale.refresh_from_db()
    fresh.refresh_from_db()
    assert stale.status == Status.INTERRUPTED and stale.text == "partial" and stale.error
    assert fresh.status == Status.STREAMING
    assert [event["kind"] for _, event in published] == ["done"]


def test_keeping_answers_alive_renews_only_streaming_ones(ask):
    running, finished = ask("one"), ask("two")
    services.answer_finish(answer_id=finished.pk, status=Status.COMPLETE)
    old = timezone.now() - datetime.timedelta(seconds=60)
    Answer.objects.update(alive_at=old)
    assert services.answers_keep_alive([running.pk, finished.pk]) == 1
    assert Answer.objects.get(pk=running.pk).alive_at > old


def test_continue_starts_a_new_answer_to_the_same_question(ask, user):
    answer = ask()
    services.answer_stop(user=user, answer_id=answer.pk)
    follow = services.answer_retry(user=user, answer_id=answer.pk, continues=True)
    assert follow.question_id == answer.question_id and follow.continues_id == answer.pk
    assert follow.pk > answer.pk and follow.is_streaming


def test_retrying_a_running_answer_is_refused(ask, user):
    answer = ask()
    with pytest.raises(limits.AnswerLimitReached):
        services.answer_retry(user=user, answer_id=answer.pk)


def test_a_room_answer_lives_in_the_rooms_conversation_and_is_published_to_the_room_too(
    user, capture_published, settings
):
    settings.ASSISTANT_MAX_CONCURRENT = 5
    with capture_published() as published:
        answer = services.room_answer_start(
            room_id=42,
            room_key="chat.room.42",
            room_title="lobby",
            asker=user,
            text="@assistant hello",
            client_id=uuid.uuid4(),
            message_id=900,
        )
        services.answer_append(answer_id=answer.pk, route=Route.of(answer), start=0, text="Hi")
        services.answer_finish(answer_id=answer.pk, status=Status.COMPLETE)
    again = services.room_answer_start(
        room_id=42,
        room_key="chat.room.42",
        room_title="lobby",
        asker=user,
        text="again",
        client_id=uuid.uuid4(),
        message_id=901,
    )
    assert answer.conversation_id == again.conversation_id
    assert answer.conversation.owner is None and answer.conversation.room_id == 42
    room = [event for key, event in published if key == "chat.room.42"]
    assert room == [
        {
            "kind": "assistant.delta",
            "message": 900,
            "answer": answer.pk,
            "start": 0,
            "position": 2,
            "text": "Hi",
        },
        {
            "kind": "assistant.done",
            "message": 900,
            "answer": answer.pk,
            "status": "complete",
            "position": 2,
            "finish_reason": None,
            "error": None,
        },
    ]
    assert selectors.answer_states([answer.pk, again.pk]) == {
        answer.pk: {"status": "complete", "text": "Hi", "position": 2, "error": "", "model": ""},
        again.pk: {"status": "streaming", "text": "", "position": 0, "error": "", "model": ""},
    }


def test_a_room_answer_counts_against_the_askers_limits(user, settings):
    settings.ASSISTANT_MAX_CONCURRENT = 1
    start = {"room_id": 7, "room_key": "chat.room.7", "room_title": "x", "asker": user}
    services.room_answer_start(**start, text="one", client_id=uuid.uuid4(), message_id=1)
    with pytest.raises(limits.AnswerLimitReached):
        services.room_answer_start(**start, text="two", client_id=uuid.uuid4(), message_id=2)


def test_room_members_the_chat_app_permits_may_stop_a_room_answer(user, other_user):
    answer = services.room_answer_start(
        room_id=8,
        room_key="chat.room.8",
        room_title="x",
        asker=user,
        text="q",
        client_id=uuid.uuid4(),
        message_id=3,
    )
    with pytest.raises(Answer.DoesNotExist):
        services.answer_stop(user=other_user, answer_id=answer.pk)
    stopped = services.answer_stop(user=other_user, answer_id=answer.pk, permitted=True)
    assert stopped.status == Status.STOPPED


def test_erasing_a_room_answer_stops_it_and_keeps_no_text(user, capture_published):
    start = {"room_id": 9, "room_key": "chat.room.9", "room_title": "x", "asker": user}
    answer = services.room_answer_start(**start, text="q", client_id=uuid.uuid4(), message_id=4)
    services.answer_append(answer_id=answer.pk, route=Route.of(answer), start=0, text="Rude")
    with capture_published() as published:
        services.answer_erase(answer_id=answer.pk)
    answer.refresh_from_db()
    assert (answer.status, answer.text, answer.position) == (Status.STOPPED, "", 0)
    kinds = [(key, event["kind"]) for key, event in published]
    assert ("chat.room.9", "assistant.done") in kinds
    assert (f"assistant.answer.{answer.pk}", "stop") in kinds
    services.answer_erase(answer_id=answer.pk)  # again: nothing more to do
    services.answer_erase(answer_id=10**9)  # gone: nothing to do


def test_an_answers_parts_are_folded_into_its_text_when_it_ends(ask):
    answer = ask()
    route = Route(answer.conversation_id)
    for start, text in ((0, "one "), (4, "two "), (8, "three")):
        assert services.answer_append(answer_id=answer.pk, route=route, start=start, text=text)
    services.answer_finish(answer_id=answer.pk, status=Status.COMPLETE)
    answer.refresh_from_db()
    assert (answer.text, answer.position, answer.parts.count()) == ("one two three", 13, 0)


@pytest.mark.parametrize(
    "end",
    [
        lambda answer, user: services.answer_stop(user=user, answer_id=answer.pk, position=6),
        lambda answer, user: services.answers_interrupt([answer.pk], "gone"),
    ],
    ids=["stop", "interrupt"],
)
def test_stopping_or_interrupting_keeps_the_text_of_its_parts(ask, user, end):
    answer = ask()
    route = Route(answer.conversation_id)
    services.answer_append(answer_id=answer.pk, route=route, start=0, text="abc")
    services.answer_append(answer_id=answer.pk, route=route, start=3, text="déf")
    end(answer, user)
    answer.refresh_from_db()
    assert (answer.text, answer.position, answer.parts.count()) == ("abcdéf", 6, 0)


def test_erasing_an_answer_erases_its_parts(ask):
    answer = ask()
    services.answer_append(
        answer_id=answer.pk, route=Route(answer.conversation_id), start=0, text="rude"
    )
    services.answer_erase(answer_id=answer.pk)
    answer.refresh_from_db()
    assert (answer.text, answer.position, answer.parts.count()) == ("", 0, 0)


def test_the_text_so_far_sets_the_position_it_ends_at_whatever_committed_between(ask):
    """Read after the answer's row, its parts may hold a flush the row did not: the
    position then follows the text, never the other way round."""
    answer = ask()
    route = Route(answer.conversation_id)
    services.answer_append(answer_id=answer.pk, route=route, start=0, text="one ")
    [read] = list(Answer.objects.filter(pk=answer.pk))
    assert read.position == 4
    services.answer_append(answer_id=answer.pk, route=route, start=4, text="two")
    [read] = selectors.with_text_so_far([read])
    assert (read.text, read.position) == ("one two", 7)


@pytest.mark.django_db(transaction=True)
def test_deleting_an_answer_takes_the_parts_a_flush_commits_meanwhile(ask):
    """Regression: deleting a user mid-answer failed at commit on the foreign key. The
    deletion removed the answer's parts, a flush committed one more (the answer row was not
    locked yet), then the answer went: a part referenced a deleted answer."""
    if connection.vendor != "postgresql":
        skip_or_fail("concurrent writers need PostgreSQL")
    answer = ask()
    route = Route(answer.conversation_id)
    services.answer_append(answer_id=answer.pk, route=route, start=0, text="one ")
    with transaction.atomic():
        AnswerPart.objects.filter(answer_id=answer.pk).delete()  # the collector's first step

        def flush():
            services.answer_append(answer_id=answer.pk, route=route, start=4, text="two")
            connection.close()

        writer = threading.Thread(target=flush)
        writer.start()
        writer.join()
        with connection.cursor() as cursor:  # the collector's last step
            cursor.execute("DELETE FROM assistant_answer WHERE id = %s", [answer.pk])
    assert not AnswerPart.objects.filter(answer_id=answer.pk).exists()
