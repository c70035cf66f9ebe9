"""What a conversation's event stream sends, from the database and live (``ViewState``)."""

import uuid

from django.contrib.auth import get_user_model
from django.utils import timezone

from assistant.models import Answer, Question
from assistant.streams import ViewState


def an_answer(*, pk=12, text="Hello", status=Answer.Status.STREAMING) -> Answer:
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


def test_the_ask_stream_starts_with_its_answers_turn():
    """Regression: the POST's stream began at the first delta, without the ``turn`` that
    docs/protocol.md shows first (the client learns the answer's id and question from it)."""
    state = ViewState(None, only=12)
    assert state.replay_from() == 12  # not the conversation's first answer

    sent = state.render_row(an_answer())

    assert sent.startswith(b"event: turn\nid: 12:0\n")
    assert b'event: delta\nid: 12:5\ndata: {"answer":12,"position":5,"text":"Hello"}' in sent
    assert state.render_live({"kind": "turn", "answer": 12, "meta": {}, "question": {}}) == b""


def test_the_ask_stream_skips_other_answers_and_ends_after_its_own():
    state = ViewState(None, only=12)
    assert state.render_row(an_answer(pk=13)) == b""
    sent = state.render_row(an_answer(status=Answer.Status.COMPLETE))
    assert b"event: done\nid: 12:5\n" in sent
    assert state.finished


def test_a_stream_resumed_inside_an_answer_sends_only_the_rest_of_it():
    state = ViewState((12, 3), None)
    assert state.render_row(an_answer()) == (
        b'event: delta\nid: 12:5\ndata: {"answer":12,"position":5,"text":"lo"}\n\n'
    )
