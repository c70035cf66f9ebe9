"""Writes of the assistant: questions, answers as they stream, Stop, usage; published on commit.

Every change that viewers see publishes an event to ``events.conversation_key`` through
``publish_on_commit``: a client never hears of text the database does not hold. The
generation itself (the upstream call) runs in ``assistant.runner``; these functions are the
only code that writes an answer.

Locks, always taken in this order so that two paths cannot deadlock: the conversation's row
(orders its answers: ids in commit order), then the user's ``DailyUsage`` row of the day
(serialises the user's new answers, so the concurrency limit and the budget hold when two
tabs ask at once, in two processes).
"""

from __future__ import annotations

import datetime
import logging
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import Case, F, PositiveIntegerField, Q, Value, When
from django.urls import reverse
from django.utils import timezone

from assistant import events
from assistant.limits import (
    AnswerLimitReached,
    limits_check,
    usage_add,
)
from assistant.models import Answer, AnswerPart, Conversation, Question
from assistant.upstream.base import Usage
from notifications.services import notification_create, stream_extra_publish
from streamsite.streaming.publish import publish_batch_on_commit, publish_on_commit

logger = logging.getLogger(__name__)

Status = Answer.Status
#: A new conversation's title is the start of its first question.
TITLE_LENGTH = 80


class PromptInvalid(ValueError):
    """The question is empty or too long; the message says which, for the user."""


@dataclass(frozen=True)
class Asked:
    """The answer a question started (or, for a repeated ``client_id``, already had)."""

    answer: Answer
    created: bool


def clean_prompt(text) -> str:
    """Return the question trimmed, or raise ``PromptInvalid``."""
    if not isinstance(text, str):
        raise PromptInvalid("The question must be text.")
    text = text.strip()
    if not text:
        raise PromptInvalid("The question is empty.")
    if "\x00" in text or any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        raise PromptInvalid("The question holds characters that are not text.")
    limit = settings.ASSISTANT_MAX_PROMPT_LENGTH
    if len(text) > limit:
        raise PromptInvalid(f"The question is longer than {limit} characters.")
    return text


def conversation_create(*, owner, title: str = "") -> Conversation:
    title = " ".join(title.split())[:TITLE_LENGTH] or "New conversation"
    return Conversation.objects.create(owner=owner, title=title)


def question_ask(*, user, conversation_id: int, text, client_id, model: str = "") -> Asked:
    """Store a question and its answer (status streaming); the caller starts the generation.

    Idempotent by ``client_id``: a repeat returns the answer the first call created and
    stores nothing. Raises ``Conversation.DoesNotExist`` for a conversation that is not the
    user's, ``PromptInvalid``, ``AnswerLimitReached`` or ``BudgetExhausted`` (both checked
    before anything is stored or any upstream is called).
    """
    client_id = uuid.UUID(str(client_id))
    text = clean_prompt(text)
    with transaction.atomic():
        conversation = Conversation.objects.select_for_update().get(pk=conversation_id, owner=user)
        earlier = (
            Answer.objects.filter(
                question__conversation=conversation, question__client_id=client_id
            )
            .order_by("id")
            .first()
        )
        if earlier is not None:
            return Asked(earlier, created=False)
        limits_check(user)
        question = Question.objects.create(
            conversation=conversation, author=user, text=text, client_id=client_id
        )
        if not conversation.questions.exclude(pk=question.pk).exists():
            conversation.title = " ".join(text.split())[:TITLE_LENGTH]
        answer = _answer_create(conversation, question, user, model=model)
        return Asked(answer, created=True)


def answer_retry(*, user, answer_id: int, continues: bool = False, model: str = "") -> Answer:
    """Start a new answer to the question of a finished one: again, or going on from it.

    ``continues`` makes the new answer go on from the old one's text (for an interrupted or
    stopped answer); otherwise it answers the question afresh (for a failed one).
    """
    with transaction.atomic():
        old = Answer.objects.select_related("question").get(pk=answer_id, conversation__owner=user)
        conversation = Conversation.objects.select_for_update().get(pk=old.conversation_id)
        if old.is_streaming:
            raise AnswerLimitReached(old)
        limits_check(user)
        return _answer_create(
            conversation, old.question, user, continues=old if continues else None
        )


def room_answer_start(
    *,
    room_id: int,
    room_key: str,
    room_title: str,
    asker,
    text: str,
    client_id,
    message_id: int,
    asked_in: int | None = None,
    model: str = "",
) -> Answer:
    """Store an answer to a chat room message that asked the assistant, and start it.

    For the chat app, inside its transaction (it has stored ``message_id``, the message
    that will show the answer, and checked the room's rules); ``asked_in`` is the message
    that asked (deleting it erases the question: ``question_erase``). The asker's limits apply
    (``AnswerLimitReached``, ``BudgetExhausted``). The answer's deltas and end are also
    published to ``room_key``; the generation starts in this process once the transaction
    commits.
    """
    text = clean_prompt(text)
    with transaction.atomic():
        Conversation.objects.bulk_create(
            [Conversation(room_id=room_id, title=f"#{room_title}"[:200])], ignore_conflicts=True
        )
        conversation = Conversation.objects.select_for_update().get(room_id=room_id)
        limits_check(asker)
        question = Question.objects.create(
            conversation=conversation,
            author=asker,
            text=text,
            client_id=uuid.UUID(str(client_id)),
            room_message_id=asked_in,
        )
        answer = _answer_create(
            conversation,
            question,
            asker,
            model=model,
            route=events.Route(conversation.pk, room_key, message_id),
        )
        transaction.on_commit(lambda: _start_soon(answer.pk))
        return answer


def _start_soon(answer_id: int) -> None:
    from assistant.runner import start_generation_soon

    start_generation_soon(answer_id)


def _answer_create(
    conversation,
    question,
    user,
    *,
    continues: Answer | None = None,
    model: str = "",
    route: events.Route | None = None,
) -> Answer:
    now = timezone.now()
    answer = Answer.objects.create(
        conversation=conversation,
        question=question,
        owner=user,
        continues=continues,
        model=model[:200],
        room_key=route.room_key if route else "",
        room_message_id=route.room_message_id if route else None,
        started_at=now,
        alive_at=now,
    )
    conversation.updated_at = now
    conversation.save(update_fields=["title", "updated_at"])
    publish_on_commit(events.conversation_key(conversation.pk), events.turn_event(question, answer))
    if conversation.owner_id is not None:  # a room's conversation is nobody's own
        event = events.conversation_moved_event(conversation)
        stream_extra_publish(user_id=conversation.owner_id, event=event)
    return answer


@dataclass(frozen=True, slots=True)
class Append:
    """Text to store at ``start`` of a streaming answer (``first_token_ms`` with its first)."""

    answer_id: int
    route: events.Route
    start: int
    text: str
    first_token_ms: int | None = None


def answer_append(
    *, answer_id: int, route: events.Route, start: int, text: str, first_token_ms=None
) -> bool:
    """Append ``text`` at ``start`` to a streaming answer; False if it is no longer streaming."""
    if not text:
        return True
    written = answers_append([Append(answer_id, route, start, text, first_token_ms)])
    return answer_id in written


def answers_append(appends: list[Append]) -> set[int]:
    """Append text to many streaming answers in one transaction; return the ids written.

    The flushes of every answer a process generates go through here together
    (``assistant.flushes``): one UPDATE, one INSERT of the answers' new parts
    (``AnswerPart``: the cost of a flush does not grow with the answer), one commit and one
    channel-layer message per flush, however many answers. Each append is guarded by
    status and position in the UPDATE: a Stop (which cuts the text and ends the answer) or
    another writer cannot be overwritten, and the generator learns here, at its next
    write, that it must stop, should the Stop's message have been lost.
    """
    appends = [a for a in appends if a.text]
    if not appends:
        return set()
    ok = appends
    with transaction.atomic():
        fields = {
            "position": Case(
                *(When(pk=a.answer_id, then=Value(a.start + len(a.text))) for a in ok),
                output_field=PositiveIntegerField(),
            ),
            "alive_at": timezone.now(),
        }
        firsts = [a for a in ok if a.first_token_ms is not None]
        if firsts:
            fields["first_token_ms"] = Case(
                *(When(pk=a.answer_id, then=Value(a.first_token_ms)) for a in firsts),
                default=F("first_token_ms"),
                output_field=PositiveIntegerField(),
            )
        guard = Q()
        for a in ok:
            guard |= Q(pk=a.answer_id, position=a.start)
        changed = Answer.objects.filter(guard, status=Status.STREAMING).update(**fields)
        if changed != len(ok):
            # Some were stopped (or are not where their writer thinks): the rows this
            # UPDATE changed are those now streaming at the end of their append (they
            # stay locked until the commit; each answer has one writer).
            ended = {a.answer_id: a.start + len(a.text) for a in ok}
            now = Answer.objects.filter(pk__in=list(ended), status=Status.STREAMING)
            done = {
                pk for pk, position in now.values_list("pk", "position") if ended[pk] == position
            }
            ok = [a for a in ok if a.answer_id in done]
        AnswerPart.objects.bulk_create(
            [AnswerPart(answer_id=a.answer_id, start=a.start, text=a.text) for a in ok]
        )
        for keys, base, values in events.delta_batches(ok):
            publish_batch_on_commit(keys, base, values)
    return {a.answer_id for a in ok}


def _fold_parts(answer: Answer) -> None:
    """Put a streaming answer's parts into its text and delete them (under its row lock).

    For every change that ends an answer: from then on its text is whole in one place.
    """
    parts = AnswerPart.objects.filter(answer_id=answer.pk)
    texts = list(parts.order_by("start").values_list("text", flat=True))
    if texts:
        answer.text += "".join(texts)
        parts.delete()


def _publish_done(answer: Answer) -> None:
    """Publish an answer's final state, after commit, wherever it is shown."""
    publish_on_commit(events.conversation_key(answer.conversation_id), events.done_event(answer))
    if answer.room_key:
        publish_on_commit(answer.room_key, events.room_done_event(events.Route.of(answer), answer))


def answers_keep_alive(answer_ids: list[int]) -> int:
    """Renew the liveness mark of the answers this process is generating (one UPDATE)."""
    if not answer_ids:
        return 0
    return Answer.objects.filter(pk__in=answer_ids, status=Status.STREAMING).update(
        alive_at=timezone.now()
    )


def answer_finish(
    *,
    answer_id: int,
    status: str,
    finish_reason: str = "",
    error: str = "",
    usage: Usage | None = None,
) -> Answer | None:
    """Give a streaming answer its final status; None if it was no longer streaming."""
    with transaction.atomic():
        answer = (
            Answer.objects.select_for_update().filter(pk=answer_id, status=Status.STREAMING).first()
        )
        if answer is None:
            return None
        _fold_parts(answer)
        answer.status = status
        answer.finish_reason = (finish_reason or "")[:40]
        answer.error = (error or "")[:300]
        answer.finished_at = timezone.now()
        if usage is not None:
            answer.prompt_tokens = usage.prompt_tokens
            answer.completion_tokens = usage.completion_tokens
            answer.usage_estimated = usage.estimated
        answer.save()
        if usage is not None:
            usage_add(user_id=answer.owner_id, tokens=usage.total_tokens)
        _publish_done(answer)
        return answer


def answer_stop(
    *, user, answer_id: int, position: int | None = None, permitted: bool = False
) -> Answer:
    """Stop an answer from wherever it is generated, keeping the text the client showed.

    Idempotent: stopping a finished answer changes nothing. ``position`` is how far the
    stopping client had shown the text; the stored text is cut there (never lengthened), so
    no hidden tail the user never saw stays in the conversation. Raises
    ``Answer.DoesNotExist`` for an answer the user may not stop: not its conversation's
    owner nor staff, unless ``permitted`` (the chat app checked its room's rules).
    """
    with transaction.atomic():
        answer = Answer.objects.select_for_update().get(pk=answer_id)
        if not permitted and not _may_stop(user, answer):
            raise Answer.DoesNotExist
        if not answer.is_streaming:
            return answer
        _fold_parts(answer)
        cut = answer.position if position is None else max(0, min(position, answer.position))
        answer.text = answer.text[:cut]
        answer.position = cut
        answer.status = Status.STOPPED
        answer.finish_reason = "stopped"
        answer.finished_at = timezone.now()
        answer.save()
        _publish_done(answer)
        publish_on_commit(events.control_key(answer.pk), events.stop_event(answer.pk))
        return answer


def answer_erase(*, answer_id: int) -> None:
    """Erase an answer's text, stopping it first if it is still being written.

    For the chat app, when a moderator deletes the message that shows it: the text is then
    neither kept in the records nor sent upstream again as context. Nothing happens for an
    answer that no longer exists.
    """
    with transaction.atomic():
        answer = Answer.objects.select_for_update().filter(pk=answer_id).first()
        if answer is None:
            return
        was_streaming = answer.is_streaming
        AnswerPart.objects.filter(answer_id=answer.pk).delete()
        answer.text, answer.position = "", 0
        if was_streaming:
            answer.status = Status.STOPPED
            answer.finish_reason = "stopped"
            answer.finished_at = timezone.now()
        answer.save()
        if was_streaming:
            _publish_done(answer)
            publish_on_commit(events.control_key(answer.pk), events.stop_event(answer.pk))


def question_erase(*, room_message_id: int) -> None:
    """Erase the text of the question a chat message asked, for the chat app when a
    moderator deletes that message: the text is then neither kept in the records nor sent
    upstream again as context. Its answer stays (its own message is deleted apart)."""
    Question.objects.filter(room_message_id=room_message_id).update(text="")


def _may_stop(user, answer: Answer) -> bool:
    if user.is_staff:
        return True
    return Conversation.objects.filter(pk=answer.conversation_id, owner=user).exists()


def answers_interrupt_stale(*, now: datetime.datetime | None = None) -> int:
    """Mark answers whose generating process stopped renewing them as interrupted.

    Safe from every process at once: each answer is taken under a row lock and changed
    only while still streaming. Reads only the answers streaming now (partial index).
    """
    now = now or timezone.now()
    bound = now - datetime.timedelta(seconds=settings.ASSISTANT_INTERRUPTED_AFTER_SECONDS)
    stale = list(
        Answer.objects.filter(status=Status.STREAMING, alive_at__lt=bound).values_list(
            "pk", flat=True
        )
    )
    marked = answers_interrupt(
        stale, "The server generating this answer stopped.", alive_before=bound
    )
    if marked:
        logger.info("marked %d answer(s) interrupted: their process stopped", marked)
    return marked


def answers_interrupt(answer_ids, reason: str, *, alive_before=None) -> int:
    """Mark these answers interrupted (if still streaming), keeping their text."""
    marked = 0
    for answer_id in answer_ids:
        with transaction.atomic():
            found = Answer.objects.select_for_update().filter(pk=answer_id, status=Status.STREAMING)
            if alive_before is not None:
                found = found.filter(alive_at__lt=alive_before)
            answer = found.first()
            if answer is None:
                continue
            _fold_parts(answer)
            answer.status = Status.INTERRUPTED
            answer.error = reason
            answer.finished_at = timezone.now()
            answer.save()
            _publish_done(answer)
            marked += 1
    return marked


def answer_ready_notify(*, answer_id: int) -> None:
    """Tell the owner their answer finished, through the notification bell.

    For answers that finished while no tab showed their conversation (the runner asks
    ``assistant.watchers``): someone who is looking needs no notification.
    """
    answer = Answer.objects.select_related("question", "owner").get(pk=answer_id)
    url = reverse("assistant:conversation", kwargs={"conversation_id": answer.conversation_id})
    if answer.status == Status.COMPLETE:
        title, level = "Your answer is ready", "success"
    else:
        title, level = "Your answer could not be finished", "warning"
    notification_create(
        recipient=answer.owner,
        title=title,
        body=answer.question.text[:200],
        url=f"{url}#answer-{answer.pk}",
        level=level,
    )
