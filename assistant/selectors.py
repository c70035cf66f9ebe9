"""Reads of the assistant: conversations, answers to replay, the prompt sent upstream."""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator

from django.db.models import Q, QuerySet, Sum

from assistant.models import Answer, AnswerPart, Conversation, DailyUsage
from streamsite.streaming.db import keyset_pages

#: Earlier answers sent upstream as context with a new question.
CONTEXT_TURNS = 20
#: Answers read per query while replaying a conversation.
REPLAY_PAGE = 100

SYSTEM_PROMPT = (
    "You are the assistant of streamsite, a Django site that shows how real-time features "
    "are built. Answer briefly and plainly."
)


def parts_of(answer_ids) -> dict[int, str]:
    """The text in the parts of these answers (``AnswerPart``), joined in order, by answer."""
    rows = (
        AnswerPart.objects.filter(answer_id__in=list(answer_ids))
        .order_by("answer_id", "start")
        .values_list("answer_id", "text")
    )
    joined: dict[int, list[str]] = {}
    for answer_id, text in rows:
        joined.setdefault(answer_id, []).append(text)
    return {answer_id: "".join(texts) for answer_id, texts in joined.items()}


def with_text_so_far(answers: list[Answer]) -> list[Answer]:
    """Give each streaming answer in ``answers`` its whole text so far, for reading only.

    A streaming answer's text is its stored text followed by its parts, read one query
    after the answer's row: its position is then set from that text (a flush committed
    between the two reads must not make the position run ahead of the text, nor an end
    that folded the parts meanwhile leave it behind). Such an instance is never saved.
    """
    streaming = [answer for answer in answers if answer.status == Answer.Status.STREAMING]
    if streaming:
        parts = parts_of(answer.pk for answer in streaming)
        for answer in streaming:
            answer.text += parts.get(answer.pk, "")
            answer.position = len(answer.text)
    return answers


def conversations_of(user) -> QuerySet[Conversation]:
    return Conversation.objects.filter(owner=user)


def conversation_of(user, conversation_id: int) -> Conversation | None:
    """The user's conversation, or None (another user's is as absent as a missing one)."""
    return Conversation.objects.filter(pk=conversation_id, owner_id=user.pk).first()


def conversation_answers(conversation_id: int) -> list[Answer]:
    """Every answer of a conversation with its question, oldest first (for the page)."""
    return with_text_so_far(
        list(
            Answer.objects.filter(conversation_id=conversation_id)
            .select_related("question__author")
            .order_by("id")
        )
    )


def answer_of(user, answer_id: int) -> Answer | None:
    answer = (
        Answer.objects.filter(pk=answer_id, conversation__owner_id=user.pk)
        .select_related("question__author")
        .first()
    )
    return with_text_so_far([answer])[0] if answer else None


def answer_states(answer_ids) -> dict[int, dict]:
    """The state of these answers, for the chat app's history: status, text so far, position."""
    rows = list(
        Answer.objects.filter(pk__in=list(answer_ids)).values(
            "pk", "status", "text", "position", "error", "model"
        )
    )
    streaming = [row for row in rows if row["status"] == Answer.Status.STREAMING]
    if streaming:  # as with_text_so_far does for instances
        parts = parts_of(row["pk"] for row in streaming)
        for row in streaming:
            row["text"] += parts.get(row["pk"], "")
            row["position"] = len(row["text"])
    return {row.pop("pk"): row for row in rows}


def running_answers_of(user_id: int) -> list[Answer]:
    return list(Answer.objects.filter(owner_id=user_id, status=Answer.Status.STREAMING))


def _answers_page(conversation_id: int):
    def fetch(after_id: int, limit: int) -> list[Answer]:
        return with_text_so_far(
            list(
                Answer.objects.filter(conversation_id=conversation_id, pk__gt=after_id)
                .select_related("question__author")
                .order_by("id")[:limit]
            )
        )

    return fetch


def answers_from(conversation_id: int, answer_id: int) -> AsyncIterator[Answer]:
    """Yield the conversation's answers from ``answer_id`` (included) on, page by page."""
    return keyset_pages(_answers_page(conversation_id), answer_id - 1, page_size=REPLAY_PAGE)


def prompt_messages(answer: Answer) -> list[dict]:
    """The chat-completions messages that ask for ``answer``: context, then its question.

    Context is the earlier questions with the answer each last got (complete or not). A
    continuation also carries the text so far of the answer it goes on from.
    """
    earlier = with_text_so_far(
        list(
            Answer.objects.filter(conversation_id=answer.conversation_id, pk__lt=answer.pk)
            .exclude(question_id=answer.question_id)
            .select_related("question")
            .order_by("-id")[: CONTEXT_TURNS * 2]
        )
    )
    messages = [{"role": "system", "content": SYSTEM_PROMPT}]
    seen_questions: set[int] = set()
    turns = []
    for old in earlier:  # newest first: keep each question's latest answer
        if old.question_id in seen_questions or not old.text or not old.question.text:
            continue
        seen_questions.add(old.question_id)
        turns.append(old)
    for old in reversed(turns[:CONTEXT_TURNS]):
        messages.append({"role": "user", "content": old.question.text})
        messages.append({"role": "assistant", "content": old.text})
    messages.append({"role": "user", "content": answer.question.text})
    if answer.continues_id is not None:
        previous = Answer.objects.only("text").get(pk=answer.continues_id)
        messages.append({"role": "assistant", "content": previous.text})
        messages.append(
            {
                "role": "user",
                "content": "Continue exactly where your last answer stopped. "
                "Do not repeat anything.",
            }
        )
    return messages


#: The windows of the usage summary: (name, label, days up to and including today).
SUMMARY_WINDOWS = (("today", "Today", 1), ("week", "Last 7 days", 7), ("month", "Last 30 days", 30))


def usage_by_user(*, today: datetime.date, order: str, limit: int) -> list[dict]:
    """Tokens and answers per user for each of ``SUMMARY_WINDOWS``, in one aggregate query.

    Reads only the usage rows of the widest window (at most one per user and day) and
    returns the ``limit`` users with the most tokens in the window ``order`` names.
    """
    oldest = max(days for _, _, days in SUMMARY_WINDOWS)
    sums = {}
    for name, _, days in SUMMARY_WINDOWS:
        since = Q(day__gt=today - datetime.timedelta(days=days))
        sums[f"tokens_{name}"] = Sum("tokens", filter=since, default=0)
        sums[f"answers_{name}"] = Sum("answers", filter=since, default=0)
    rows = (
        DailyUsage.objects.filter(day__gt=today - datetime.timedelta(days=oldest), day__lte=today)
        .values("user_id", "user__username")
        .annotate(**sums)
        .order_by(f"-tokens_{order}", "user__username")
    )
    return list(rows[:limit])
