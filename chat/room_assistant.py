"""The assistant as a participant of rooms: asked by a mention, stopped by members.

Writes of the chat app, like ``chat.services`` (which calls ``answer_mention`` from
``message_post``); the assistant's side is ``assistant.services.room_answer_start`` and
``answer_stop``. A room whose moderators turned the assistant on (``room_assistant_set``)
answers every message that mentions ``@assistant``: the answer is a message of its own in
the room's id sequence (author: who asked; ``assistant_answer_id``: the assistant's
answer, where its text lives), and its text streams to the room's sockets
(``chat.answers``). In a room without the assistant, ``@assistant`` is only text.

A refusal (the asker's concurrency limit, their daily budget, a question the assistant
cannot take) stores no answer: the asker's own message is kept, and the reason goes back
to them (the ``assistant_unavailable`` error frame, or a message on the page).
"""

from __future__ import annotations

import re
import uuid

from django.core.exceptions import PermissionDenied
from django.db import transaction

from assistant import limits as assistant_limits
from assistant import services as assistant_services
from assistant.upstream import get_provider
from chat import permissions, selectors
from chat.events import NEW_ANSWER, room_key
from chat.models import Message, Room

#: ``@assistant`` as a word, in any case; not inside a word, an address or a longer name
#: ("@assistant." ends a sentence, "@assistant.bot" is someone else).
ASSISTANT_MENTION = re.compile(r"(?<![\w.@+-])@assistant(?![\w@+-]|\.[\w@+-])", re.IGNORECASE)
#: ``assistant_answer_id`` while the answer's message is inserted and its answer is not
#: stored yet (the answer needs the message's id, and the row's constraint needs a value).
#: Never committed: it is replaced in the same transaction.
ANSWER_PENDING = 0


def mentions_assistant(body: str) -> bool:
    return ASSISTANT_MENTION.search(body) is not None


def room_assistant_set(*, user, room: Room, enabled: bool) -> bool:
    """Turn the assistant on or off in a room (its moderators and staff); True if changed.

    Open sockets need no event: each message that mentions ``@assistant`` reads the
    setting afresh (``chat.selectors.assistant_enabled``).
    """
    if not permissions.can_moderate(user, room):
        raise PermissionDenied("Only the room's moderators can turn the assistant on or off.")
    enabled = bool(enabled)
    changed = (
        Room.objects.filter(pk=room.pk)
        .exclude(assistant_enabled=enabled)
        .update(assistant_enabled=enabled)
    )
    room.assistant_enabled = enabled
    return bool(changed)


def answer_mention(*, message: Message, room: Room, user) -> tuple[Message | None, str]:
    """Start the assistant's answer to ``message`` if it asks for one; inside its transaction.

    Returns ``(answer message, "")`` when an answer started, ``(None, reason)`` when the
    assistant refused (the reason is for the asker), ``(None, "")`` when the message does
    not ask (no mention, or the room has no assistant). A refusal leaves nothing behind
    but the asker's message (a savepoint).
    """
    if not mentions_assistant(message.body) or not selectors.assistant_enabled(room.pk):
        return None, ""
    try:
        with transaction.atomic():
            shown_in = Message.objects.create(
                room=room,
                author=user,
                # A fresh id: derived from the asker's (which every member sees), a crafted
                # message could make it collide.
                client_id=uuid.uuid4(),
                body="",
                assistant_answer_id=ANSWER_PENDING,
            )
            answer = assistant_services.room_answer_start(
                room_id=room.pk,
                room_key=room_key(room.pk),
                room_title=room.slug,
                asker=user,
                text=message.body,
                client_id=shown_in.client_id,
                message_id=shown_in.pk,
                asked_in=message.pk,
                model=get_provider().name,
            )
            shown_in.assistant_answer_id = answer.pk
            shown_in.save(update_fields=["assistant_answer_id"])
    except assistant_services.PromptInvalid as error:
        return None, f"The assistant cannot answer this: {error}"
    except assistant_limits.AnswerLimitReached:
        return None, (
            "The assistant is still answering your earlier question; "
            "ask again once it is done (or stop it)."
        )
    except assistant_limits.BudgetExhausted as error:
        return None, (
            f"You have used today's assistant budget; it resets at {error.resets_at:%H:%M} UTC."
        )
    shown_in.answer_state = dict(NEW_ANSWER)
    return shown_in, ""


def message_answer_stop(*, user, message: Message, position: int | None = None):
    """Stop the assistant's answer shown by ``message``, keeping the text shown so far.

    For who asked, the room's moderators and staff, as long as they can read the room.
    ``position`` is how far the stopping client had shown the text (None: all of it).
    Raises ``Message.DoesNotExist`` if the message shows no answer (or is deleted),
    ``PermissionDenied`` for anyone else. Returns the answer (its status and position);
    stopping a finished answer changes nothing.
    """
    if message.assistant_answer_id is None or message.deleted_at is not None:
        raise Message.DoesNotExist("This message is not an answer of the assistant.")
    if not permissions.can_stop_answer(user, message.room, message):
        raise PermissionDenied("Only who asked and the room's moderators can stop this answer.")
    return assistant_services.answer_stop(
        user=user, answer_id=message.assistant_answer_id, position=position, permitted=True
    )


def message_answer_stop_by_id(*, user, room: Room, message_id: int, position: int | None = None):
    """``message_answer_stop`` for message ``message_id`` of ``room`` (a socket's, a form's)."""
    message = Message.objects.get(pk=message_id, room_id=room.pk)
    message.room = room
    return message_answer_stop(user=user, message=message, position=position)


def answer_erase_for_deleted(message: Message) -> None:
    """A moderator deleted a message: what the assistant keeps of it goes too.

    Inside the deletion's transaction. For the message showing an answer, the assistant
    stops the answer if it is still being written and erases its text; for a message that
    asked, the question's text is erased. Neither is then kept nor sent upstream as context.
    """
    if message.assistant_answer_id:
        assistant_services.answer_erase(answer_id=message.assistant_answer_id)
    else:  # one indexed UPDATE, of nothing unless the message asked
        assistant_services.question_erase(room_message_id=message.pk)
