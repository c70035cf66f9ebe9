"""The conversation stream: exact resume by position, live events checked against the database."""

import asyncio
import random
import uuid

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.utils import timezone

from assistant import events, services
from assistant.events import Route
from assistant.models import Answer, AnswerPart, Question
from assistant.streams import DONE_SENTINEL, ViewState, parse_cursor
from assistant.tests.streaming import Viewer
from streamsite.streaming.hub import close_hub

Status = Answer.Status


def delta(answer, start, text):
    return events.delta_event(answer, start, text)


def done(answer, position, status="complete"):
    return {"kind": "done", "answer": answer, "status": status, "position": position}


# ViewState: the rules, without a database ------------------------------------------------


def test_overlapping_deltas_send_only_what_is_new_and_covered_ones_nothing():
    state = ViewState(after=[(5, 3)])
    assert state.render_live(delta(5, 0, "abc")) == b""
    out = state.render_live(delta(5, 1, "bcdé"))
    assert b'"position":5,"text":"d\\u00e9"' in out or '"text":"dé"'.encode() in out
    assert b"id: 5:5\n" in out
    assert state.positions == {5: 5} and not state.needs_catch_up


def test_a_delta_beyond_what_was_sent_asks_for_the_database():
    state = ViewState(after=[(5, 3)])
    assert state.render_live(delta(5, 4, "x")) == b""
    assert state.needs_catch_up and state.positions == {5: 3}


def test_done_announcing_unseen_text_asks_for_the_database_and_a_shorter_one_is_sent():
    state = ViewState(after=[(5, 3)])
    state.render_live(done(5, 4))
    assert state.needs_catch_up
    state = ViewState(after=[(5, 3)])
    out = state.render_live(done(5, 2, "stopped"))
    assert out.startswith(b"event: done\nid: 5:2\n") and state.positions == {}


def test_turns_of_answers_already_sent_are_dropped_and_lost_turns_ask_for_the_database():
    state = ViewState(after=[(5, 0)])
    turn = {"kind": "turn", "answer": 4, "meta": {}, "question": {}}
    assert state.render_live(turn) == b""
    assert state.render_live(delta(9, 0, "x")) == b"" and state.needs_catch_up


def test_a_new_answers_turn_is_read_from_the_database_not_taken_live():
    """Turns are published by the requests that asked, so an answer committed first can be
    published second; taken live, the earlier one would then pass for "sent before". A
    turn sends the stream to the database, which holds both, in id order."""
    state = ViewState(after=[(5, 0)])
    later = {"kind": "turn", "answer": 9, "meta": {}, "question": {}}
    assert state.render_live(later) == b"" and state.needs_catch_up
    state.needs_catch_up = False
    out = state.render_row(a_stored_answer(pk=8, text="")) + state.render_row(
        a_stored_answer(pk=9, text="")
    )
    assert out.count(b"event: turn") == 2 and state.positions == {5: 0, 8: 0, 9: 0}
    earlier = {"kind": "turn", "answer": 8, "meta": {}, "question": {}}
    assert state.render_live(earlier) == b"" and not state.needs_catch_up


def test_event_ids_carry_every_streaming_answers_position_so_resume_is_exact():
    """Two answers streaming at once: the newer one's ids still say how far the older got."""
    state = ViewState(after=[(5, 3)])
    state.render_row(a_stored_answer(pk=7, text=""))
    out = state.render_live(delta(7, 0, "xy"))
    assert b"id: 5:3,7:2\n" in out
    out = state.render_live(done(5, 3))
    assert b"id: 7:2\n" in out
    out = state.render_live(done(7, 2))
    assert b"id: 7:2\n" in out and state.positions == {}
    resumed = ViewState(after=parse_cursor("5:3,7:2"))
    assert resumed.positions == {5: 3, 7: 2} and resumed.replay_from() == 5


def test_the_posts_stream_follows_only_its_answer_and_finishes_with_it():
    state = ViewState(after=[(5, 0)], only=5)
    assert state.render_live({"kind": "turn", "answer": 6, "meta": {}, "question": {}}) == b""
    state.render_live(delta(5, 0, "hi"))
    state.render_live(done(5, 2))
    assert state.finished


def a_stored_answer(*, pk=12, text="Hello", status=Status.STREAMING) -> Answer:
    """An answer with its question and author, as the replay reads them (not saved)."""
    author = get_user_model()(pk=1, username="alice")
    question = Question(pk=7, conversation_id=3, author=author, text="Hi?", client_id=uuid.uuid4())
    now = timezone.now()
    return Answer(
        pk=pk,
        conversation_id=3,
        question=question,
        owner=author,
        text=text,
        position=len(text),
        status=status,
        started_at=now,
        alive_at=now,
    )


def test_the_posts_stream_starts_with_its_answers_turn():
    """Regression: the POST's stream began at the first delta, without the ``turn`` that
    docs/protocol.md shows first (the client learns the answer's id and question from it)."""
    state = ViewState(None, only=12)
    assert state.replay_from() == 12  # not the conversation's first answer
    assert state.render_row(a_stored_answer(pk=11)) == b""

    sent = state.render_row(a_stored_answer())

    assert sent.startswith(b"event: turn\nid: 12:0\n")
    assert b'event: delta\nid: 12:5\ndata: {"answer":12,"position":5,"text":"Hello"}' in sent
    assert state.render_live({"kind": "turn", "answer": 12, "meta": {}, "question": {}}) == b""
    state.render_row(a_stored_answer(status=Status.COMPLETE))
    assert state.finished


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, None),
        ("", None),
        ("12:340", [(12, 340)]),
        ("0:0", [(0, 0)]),
        ("3:1,5:0", [(3, 1), (5, 0)]),
    ],
)
def test_cursors_parse(raw, expected):
    assert parse_cursor(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "12",
        "12:",
        ":3",
        "a:1",
        "1:-1",
        "1:2:3",
        "1" * 19 + ":1",
        "\u0661:\u0661",
        "1:2,",
        ",1:2",
        ",".join(["1:1"] * 17),
    ],
)
def test_malformed_cursors_are_refused(raw):
    with pytest.raises(ValueError, match="<answer>:<position>"):
        parse_cursor(raw)


# The stream, driven as Django's ASGI handler drives it --------------------------------


@pytest.fixture(autouse=True)
async def close_the_hub():
    yield
    await close_hub()


append = sync_to_async(services.answer_append)
finish = sync_to_async(services.answer_finish)


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("channel_layer")
async def test_replays_from_the_position_then_goes_live_then_ends_the_posts_stream(ask):
    answer = await sync_to_async(ask)()
    conv = answer.conversation_id
    await append(answer_id=answer.pk, route=Route(conv), start=0, text="Hello, ")
    viewer = Viewer(conv, after=[(answer.pk, 3)], only=answer.pk)
    first = await viewer.reader.until(lambda e: e["event"] == "delta")
    assert first["id"] == f"{answer.pk}:7" and '"text":"lo, "' in first["data"]
    await append(answer_id=answer.pk, route=Route(conv), start=7, text="world")
    live = await viewer.reader.until(lambda e: e["event"] == "delta")
    assert live["id"] == f"{answer.pk}:12"
    await finish(answer_id=answer.pk, status=Status.COMPLETE, finish_reason="stop")
    end = await viewer.reader.until(lambda e: e["event"] == "done")
    assert '"status":"complete"' in end["data"]
    await viewer.reader.until(lambda e: e["data"] == "[DONE]")
    await asyncio.wait_for(viewer.task, 10)
    assert viewer.raw.endswith(DONE_SENTINEL)


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("channel_layer")
async def test_a_lost_delta_is_recovered_from_the_database(ask):
    answer = await sync_to_async(ask)()
    conv = answer.conversation_id
    viewer = Viewer(conv, after=[(answer.pk, 0)])
    await append(answer_id=answer.pk, route=Route(conv), start=0, text="one ")
    await viewer.reader.until(lambda e: e["event"] == "delta")
    # Stored but its event lost on the way (the layer is lossy): no publish.
    await sync_to_async(
        lambda: (
            AnswerPart.objects.create(answer_id=answer.pk, start=4, text="two "),
            Answer.objects.filter(pk=answer.pk).update(position=8),
        )
    )()
    await append(answer_id=answer.pk, route=Route(conv), start=8, text="three")
    await viewer.reader.until(lambda e: e["event"] == "delta" and e["id"].endswith(":13"))
    assert viewer.text_of(answer.pk) == "one two three"
    await viewer.close()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("channel_layer")
async def test_resuming_at_any_cut_gives_the_text_exactly_once(ask):
    """A connection cut anywhere and resumed by its last event id: no gap, no duplicate."""
    answer = await sync_to_async(ask)()
    conv = answer.conversation_id
    words = [f"w{i}é😀 " for i in range(40)]
    position = 0
    for word in words:
        await append(answer_id=answer.pk, route=Route(conv), start=position, text=word)
        position += len(word)
    await finish(answer_id=answer.pk, status=Status.COMPLETE)
    full = "".join(words)
    rng = random.Random(8)
    for _ in range(10):
        cut = rng.randint(0, len(full))
        viewer = Viewer(conv, after=[(answer.pk, cut)], only=answer.pk)
        await viewer.reader.until(lambda e: e["data"] == "[DONE]")
        assert full[:cut] + viewer.text_of(answer.pk) == full


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("channel_layer")
async def test_a_new_question_from_another_tab_reaches_every_viewer(ask):
    first = await sync_to_async(ask)("one")
    await finish(answer_id=first.pk, status=Status.COMPLETE)
    viewer = Viewer(first.conversation_id, after=[(first.pk, 0)])
    await viewer.reader.until(lambda e: e["event"] == "done")
    second = await sync_to_async(ask)("two")
    turn = await viewer.reader.until(lambda e: e["event"] == "turn")
    assert turn["id"] == f"{second.pk}:0" and '"text":"two"' in turn["data"]
    await viewer.close()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("channel_layer")
async def test_a_stop_that_cuts_below_what_a_viewer_has_tells_it_the_shorter_position(ask, user):
    answer = await sync_to_async(ask)()
    conv = answer.conversation_id
    viewer = Viewer(conv, after=[(answer.pk, 0)])
    await append(answer_id=answer.pk, route=Route(conv), start=0, text="abcdef")
    await viewer.reader.until(lambda e: e["event"] == "delta")
    await sync_to_async(services.answer_stop)(user=user, answer_id=answer.pk, position=2)
    end = await viewer.reader.until(lambda e: e["event"] == "done")
    assert end["id"] == f"{answer.pk}:2" and '"status":"stopped"' in end["data"]
    await viewer.close()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("channel_layer")
async def test_two_answers_streaming_at_once_resume_exactly_from_the_last_event_id(ask):
    older, newer = await sync_to_async(ask)("one"), await sync_to_async(ask)("two")
    conv = older.conversation_id
    viewer = Viewer(conv, after=[(older.pk, 0)])
    await append(answer_id=older.pk, route=Route(conv), start=0, text="old ")
    await append(answer_id=newer.pk, route=Route(conv), start=0, text="new ")
    last = await viewer.reader.until(
        lambda e: e["event"] == "delta" and f'"answer":{newer.pk}' in e["data"]
    )
    await viewer.close()
    await append(answer_id=older.pk, route=Route(conv), start=4, text="more")
    await append(answer_id=newer.pk, route=Route(conv), start=4, text="also")
    resumed = Viewer(conv, after=parse_cursor(last["id"]))
    await resumed.reader.until(
        lambda e: e["event"] == "delta" and f'"answer":{newer.pk}' in e["data"]
    )
    assert viewer.text_of(older.pk) + resumed.text_of(older.pk) == "old more"
    assert viewer.text_of(newer.pk) + resumed.text_of(newer.pk) == "new also"
    await resumed.close()
