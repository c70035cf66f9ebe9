"""One socket's view of the assistant's answers (chat.answers): each piece of text once.

The rules mirror ``assistant.streams.ViewState``: a delta at the socket's position is the
room's shared frame; covered ones are dropped, overlapping ones trimmed (in code points);
a gap or a done beyond the socket sends it to the database.
"""

import json

import pytest
from asgiref.sync import sync_to_async

from assistant import services as assistant_services
from assistant.events import Route
from assistant.models import Answer
from chat import protocol
from chat.answers import CATCH_UP, AnswerStreams
from chat.models import Message
from chat.recent_ids import RecentIds
from chat.tests.factories import in_plain_thread, post, room_with

MESSAGE, ANSWER = 7, 70


def delta(start: int, text: str, message: int = MESSAGE) -> dict:
    return {
        "kind": "assistant.delta",
        "message": message,
        "answer": ANSWER,
        "start": start,
        "position": start + len(text),
        "text": text,
    }


def done(position: int, status: str = "complete", message: int = MESSAGE) -> dict:
    return {
        "kind": "assistant.done",
        "message": message,
        "answer": ANSWER,
        "status": status,
        "position": position,
        "finish_reason": None,
        "error": None,
    }


def payload(status: str = "streaming", position: int = 0, message: int = MESSAGE) -> dict:
    return {"id": message, "assistant": True, "status": status, "position": position}


def frame(message: dict) -> dict:
    return json.loads(message["text"])


def framed(*ids: int) -> RecentIds:
    sent = RecentIds(8)
    for message_id in ids:
        sent.add(message_id)
    return sent


@pytest.fixture
def streams() -> AnswerStreams:
    """A socket that sent message 7, an answer being written, at position 0."""
    streams = AnswerStreams()
    streams.shown(payload(), ANSWER)
    return streams


def test_a_delta_where_the_socket_is_goes_out_as_the_room_s_shared_frame(streams):
    event = delta(0, "Hé😀")
    message = streams.delta(event, framed(MESSAGE))
    assert message is protocol.event_send(event)  # built once per event, for every socket
    assert frame(message) == {"type": "message.delta", "id": MESSAGE, "position": 3, "text": "Hé😀"}
    assert streams.position(MESSAGE) == 3


def test_covered_deltas_are_dropped_and_overlapping_ones_trimmed_in_code_points(streams):
    streams.delta(delta(0, "Hé😀"), framed(MESSAGE))
    assert streams.delta(delta(0, "Hé😀"), framed(MESSAGE)) is None
    assert streams.delta(delta(1, "é"), framed(MESSAGE)) is None
    trimmed = streams.delta(delta(2, "😀 ok"), framed(MESSAGE))
    assert frame(trimmed) == {"type": "message.delta", "id": MESSAGE, "position": 6, "text": " ok"}
    assert streams.position(MESSAGE) == 6


def test_a_gap_or_a_done_beyond_the_socket_needs_the_database(streams):
    assert streams.delta(delta(4, "late"), framed(MESSAGE)) is CATCH_UP
    assert streams.done(done(4), framed(MESSAGE)) is CATCH_UP
    assert streams.position(MESSAGE) == 0  # nothing changed: the catch-up decides


def test_done_ends_the_answer_even_below_what_was_sent(streams):
    streams.delta(delta(0, "Hello"), framed(MESSAGE))
    event = done(2, "stopped")  # a Stop cut the text where the stopping client was
    message = streams.done(event, framed(MESSAGE))
    assert message is protocol.event_send(event)
    assert frame(message) == {
        "type": "message.done",
        "id": MESSAGE,
        "status": "stopped",
        "position": 2,
        "error": None,
    }
    assert streams.streaming() == []
    assert streams.delta(delta(5, "more"), framed(MESSAGE)) is None  # finished: dropped


def test_events_of_a_message_not_framed_yet_are_dropped_and_remembered(streams):
    assert streams.delta(delta(0, "x", message=9), framed(MESSAGE)) is None
    assert streams.done(done(1, message=9), framed(MESSAGE)) is None
    assert streams.was_early(9) and not streams.was_early(MESSAGE)


def test_a_newer_state_moves_the_socket_on_an_older_one_does_not(streams):
    streams.shown(payload(position=5), ANSWER)
    assert streams.position(MESSAGE) == 5
    streams.shown(payload(position=3), ANSWER)  # the client keeps its longer text
    assert streams.position(MESSAGE) == 5
    streams.shown(payload("complete", 9), ANSWER)
    assert streams.streaming() == []
    streams.shown({"id": 8, "body": "people's messages are not followed"}, None)
    assert streams.streaming() == []


@pytest.mark.django_db(transaction=True)
async def test_catching_up_sends_the_missing_text_then_the_end(user):
    def start() -> Message:
        room = room_with("lobby", members=[user], assistant=True)
        post(user, room, "@assistant q")
        shown = Message.objects.get(room=room, assistant_answer_id__isnull=False)
        answer = Answer.objects.get(pk=shown.assistant_answer_id)
        assistant_services.answer_append(
            answer_id=answer.pk, route=Route.of(answer), start=0, text="Hé😀 there"
        )
        return shown

    shown = await in_plain_thread(start)
    message, answer_id = shown.pk, shown.assistant_answer_id
    streams = AnswerStreams()
    streams.shown(payload(position=2, message=message), answer_id)
    frames = [json.loads(text) for text in await streams.catch_up([message])]
    assert frames == [{"type": "message.delta", "id": message, "position": 9, "text": "😀 there"}]
    assert await streams.catch_up([message]) == []  # up to date: nothing to send
    await sync_to_async(assistant_services.answer_stop)(
        user=user, answer_id=answer_id, position=4, permitted=True
    )
    frames = [json.loads(text) for text in await streams.catch_up([message])]
    assert frames == [
        {"type": "message.done", "id": message, "status": "stopped", "position": 4, "error": None}
    ]
    assert streams.streaming() == []
    fresh = await streams.fresh({"id": message, "assistant": True, "body": ""}, answer_id)
    assert (fresh["body"], fresh["status"], fresh["position"]) == ("Hé😀 ", "stopped", 4)
