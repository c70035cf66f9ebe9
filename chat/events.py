"""What the chat app publishes: the key of a room's sockets and the event shapes.

Every event holds JSON-safe primitives only (it crosses Redis): ids are ints, the
``client_id`` a string, times ISO 8601 strings. The consumer turns ``message`` and
``message.deleted`` into the socket frames ``{"type": kind, ...}`` of docs/protocol.md;
``member.removed`` is for the consumers themselves (the removed user's sockets stop).

The assistant publishes to the same key while it answers in the room
(``assistant.events.room_delta_event`` and ``room_done_event``: ``assistant.delta`` and
``assistant.done``, naming the chat message that shows the answer); the sockets turn them
into ``message.delta`` and ``message.done`` frames (``chat.answers``).
"""

#: The fields of a message as clients receive them (socket frames, history).
MESSAGE_FIELDS = ("id", "client_id", "room", "author", "body", "created_at")


def room_key(room_id: int) -> str:
    """The hub key (and channel-layer group) of one room's sockets.

    Built from the id, never the slug or name: group names must stay ASCII and short, and
    must not come from user text.
    """
    return f"chat.room.{int(room_id)}"


#: The state of an answer the assistant no longer has (deleted in its admin).
MISSING_ANSWER = {
    "status": "failed",
    "text": "",
    "position": 0,
    "error": "This answer is no longer available.",
}
#: The state of an answer just started: what the room hears with its message.
NEW_ANSWER = {"status": "streaming", "text": "", "position": 0, "error": ""}


def message_payload(message) -> dict:
    """A message as clients receive it: ``{id, client_id, room, author, body, created_at}``.

    ``message.room`` and ``message.author`` must be loaded (``select_related``). A deleted
    message (only ever met in history or resume, never as a new message) keeps its place
    with an empty ``body`` and ``"deleted": true``, so ids stay continuous for the client.

    The assistant's answer also has ``"assistant": true``, its ``status``, ``position``
    (the length of ``body`` in code points) and ``error``; ``body`` is its text so far,
    from ``message.answer_state`` (``chat.selectors.attach_answer_states``), and ``author``
    is who asked.
    """
    payload = {
        "id": message.pk,
        "client_id": str(message.client_id),
        "room": message.room.slug,
        "author": {"id": message.author_id, "username": message.author.get_username()},
        "body": message.body,
        "created_at": message.created_at.isoformat(),
    }
    if message.assistant_answer_id is not None:
        payload["assistant"] = True
        if message.deleted_at is None:
            state = getattr(message, "answer_state", None) or MISSING_ANSWER
            payload["body"] = state["text"]
            payload["status"] = state["status"]
            payload["position"] = state["position"]
            payload["error"] = state["error"] or None
    if message.deleted_at is not None:
        payload["body"] = ""  # already empty in the database; never shown, whatever happens
        payload["deleted"] = True
    return payload


def message_event(
    payload: dict, *, answer_id: int | None = None, previous_id: int | None = None
) -> dict:
    """A new message in the room (``payload`` from ``message_payload``).

    For the assistant's answer, ``answer_id`` (the assistant's id, which clients never
    see) lets each socket follow the answer's text (``chat.answers``). ``previous_id`` is
    the room's message before this one (None: the room's first), so a socket can tell when
    this event overtook an earlier message's (``chat.outbox``); never sent to clients.
    """
    event = {"kind": "message", "message": payload}
    if answer_id is not None:
        event["answer"] = int(answer_id)
    if previous_id is not None:
        event["previous"] = int(previous_id)
    return event


def message_deleted_event(message_id: int) -> dict:
    """A moderator deleted this message: every client removes it."""
    return {"kind": "message.deleted", "id": int(message_id)}


def member_removed_event(user_id: int) -> dict:
    """This user left or was removed: their open sockets in the room stop receiving at once
    (a public room's consumer may re-check ``can_read`` instead of closing)."""
    return {"kind": "member.removed", "user_id": int(user_id)}


def typing_event(user) -> dict:
    """``user`` is typing in the room (sent to the room's other sockets, never stored)."""
    return {"kind": "typing", "user": user.get_username(), "user_id": int(user.pk)}


def room_deleted_event() -> dict:
    """The room is gone: its sockets close with 4404."""
    return {"kind": "room.deleted"}
