"""What the assistant publishes: hub keys and event shapes (JSON-safe primitives only).

A conversation's viewers (every tab, the POST that asked) subscribe to its key and receive:

- ``turn``: a new answer (and the question it answers) was created;
- ``delta``: text appended to an answer, committed before it was published: ``start`` is
  where it begins, ``position`` where it ends (the answer's stored length after it);
- ``done``: the answer reached a final status; ``position`` is its final length (a Stop can
  cut the text back to what the stopping client had shown).

The process generating an answer subscribes to its control key, where a Stop from any
process arrives at once (the database says so too: the generator sees a stopped answer at
its next write, should the layer drop the message).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.urls import reverse

from notifications.extras import extra_event


@dataclass(frozen=True, slots=True)
class Route:
    """Where an answer's events go: its conversation's viewers and, for an answer given in
    a chat room, that room's sockets too (``room_key``, the chat message that shows it)."""

    conversation_id: int
    room_key: str = ""
    room_message_id: int | None = None

    @classmethod
    def of(cls, answer) -> Route:
        return cls(answer.conversation_id, answer.room_key, answer.room_message_id)


#: The event of the owner's notification stream that says a conversation moved (a question
#: was asked in it): the home dashboard's recent conversations follow it (static/js/home.js).
CONVERSATION_EVENT = "conversation"


def conversation_moved_event(conversation) -> dict:
    """``conversation`` as an extra event of its owner's notification stream, versioned by
    its ``updated_at`` (in microseconds): a late relay never undoes a newer move."""
    updated = conversation.updated_at
    data = {
        "id": conversation.pk,
        "title": conversation.title,
        "url": reverse("assistant:conversation", args=[conversation.pk]),
        "updated_at": updated.isoformat(),
    }
    seq = int(updated.timestamp() * 1_000_000)
    return extra_event(CONVERSATION_EVENT, conversation.pk, seq, data, active=False)


def conversation_key(conversation_id: int) -> str:
    """The hub key of one conversation's viewers."""
    return f"assistant.conversation.{int(conversation_id)}"


def control_key(answer_id: int) -> str:
    """The hub key the process generating ``answer_id`` listens on for Stop."""
    return f"assistant.answer.{int(answer_id)}"


def question_payload(question) -> dict:
    return {
        "id": question.pk,
        "text": question.text,
        "author": question.author.get_username() if question.author_id else "",
        "created_at": question.created_at.isoformat(),
    }


def answer_payload(answer) -> dict:
    """An answer's metadata, without its text (which travels as deltas)."""
    return {
        "id": answer.pk,
        "question": answer.question_id,
        "continues": answer.continues_id,
        "status": answer.status,
        "model": answer.model,
        "started_at": answer.started_at.isoformat(),
    }


def usage_payload(answer) -> dict | None:
    if answer.prompt_tokens is None and answer.completion_tokens is None:
        return None
    return {
        "prompt_tokens": answer.prompt_tokens or 0,
        "completion_tokens": answer.completion_tokens or 0,
        "total_tokens": answer.total_tokens,
        "estimated": answer.usage_estimated,
    }


def turn_event(question, answer) -> dict:
    return {
        "kind": "turn",
        "answer": answer.pk,
        "question": question_payload(question),
        "meta": answer_payload(answer),
    }


def delta_event(answer_id: int, start: int, text: str) -> dict:
    """``text`` stored at ``start``; positions count code points."""
    return {
        "kind": "delta",
        "answer": answer_id,
        "start": start,
        "position": start + len(text),
        "text": text,
    }


def done_event(answer) -> dict:
    return {
        "kind": "done",
        "answer": answer.pk,
        "status": answer.status,
        "position": answer.position,
        "finish_reason": answer.finish_reason or None,
        "error": answer.error or None,
        "usage": usage_payload(answer),
        "first_token_ms": answer.first_token_ms,
    }


def room_delta_event(route: Route, answer_id: int, start: int, text: str) -> dict:
    """``delta_event`` for a chat room's sockets, naming the chat message that shows it."""
    return {
        "kind": "assistant.delta",
        "message": route.room_message_id,
        "answer": answer_id,
        "start": start,
        "position": start + len(text),
        "text": text,
    }


def delta_batches(appends) -> list[tuple[list[str], dict, dict[str, list]]]:
    """The deltas of many answers as ``publish_batch_on_commit`` arguments: one batch for
    the conversations' viewers and, if any answer is shown in a chat room, one for the rooms.

    Each key gets exactly what ``delta_event`` (or ``room_delta_event``) would give it;
    ``appends`` are ``services.Append``.
    """
    batches = [
        (
            [conversation_key(a.route.conversation_id) for a in appends],
            {"kind": "delta"},
            _delta_fields(appends),
        )
    ]
    in_rooms = [a for a in appends if a.route.room_key]
    if in_rooms:
        fields = {"message": [a.route.room_message_id for a in in_rooms], **_delta_fields(in_rooms)}
        batches.append(([a.route.room_key for a in in_rooms], {"kind": "assistant.delta"}, fields))
    return batches


def _delta_fields(appends) -> dict[str, list]:
    return {
        "answer": [a.answer_id for a in appends],
        "start": [a.start for a in appends],
        "position": [a.start + len(a.text) for a in appends],
        "text": [a.text for a in appends],
    }


def room_done_event(route: Route, answer) -> dict:
    """``done_event`` for a chat room's sockets."""
    return {
        "kind": "assistant.done",
        "message": route.room_message_id,
        "answer": answer.pk,
        "status": answer.status,
        "position": answer.position,
        "finish_reason": answer.finish_reason or None,
        "error": answer.error or None,
    }


def stop_event(answer_id: int) -> dict:
    return {"kind": "stop", "answer": answer_id}
