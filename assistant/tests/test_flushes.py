"""The process' flusher: many answers' text in one transaction and one message per flush."""

import asyncio

import pytest
from asgiref.sync import sync_to_async

from assistant import events, selectors, services
from assistant.flushes import Flusher
from assistant.models import Answer
from streamsite.streaming import publish as publish_module

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("channel_layer")]


@pytest.fixture(autouse=True)
def answers_at_once(settings):
    settings.ASSISTANT_MAX_CONCURRENT = 10


class StoredAnswer:
    """A writer over a stored answer, as a generation is: text waits until taken."""

    def __init__(self, answer: Answer, flusher: Flusher) -> None:
        self.answer_id = answer.pk
        self.route = events.Route.of(answer)
        self.flusher = flusher
        self.position = 0
        self.pending: list[str] = []
        self.first_written = False
        self.outcomes: list[bool | None] = []
        self.changed = asyncio.Event()

    def add(self, text: str) -> None:
        self.pending.append(text)
        self.flusher.submit(self)

    def take(self):
        if not self.pending:
            return None
        text = "".join(self.pending)
        self.pending.clear()
        return services.Append(self.answer_id, self.route, self.position, text)

    def written(self, append, outcome) -> None:
        self.outcomes.append(outcome)
        if outcome:
            self.position += len(append.text)
            self.first_written = True
        self.changed.set()

    async def until_written(self, count: int) -> None:
        async with asyncio.timeout(5):
            while len(self.outcomes) < count:
                self.changed.clear()
                await self.changed.wait()


async def texts_so_far(answer_ids) -> dict[int, str]:
    def read():
        answers = list(Answer.objects.filter(pk__in=list(answer_ids)))
        return {answer.pk: answer.text for answer in selectors.with_text_so_far(answers)}

    return await sync_to_async(read)()


@pytest.fixture
def sent(monkeypatch):
    """The hub messages published (one per channel-layer send), as they leave."""
    messages: list[dict] = []
    real = publish_module.apublish

    async def recording(group, message):
        messages.append(message)
        await real(group, message)

    monkeypatch.setattr("streamsite.streaming.db.apublish", recording)
    return messages


async def test_one_flush_writes_every_waiting_answer_in_one_message(ask, sent):
    answers = [await sync_to_async(ask)(f"question {i}") for i in range(3)]
    flusher = Flusher()
    writers = [StoredAnswer(answer, flusher) for answer in answers]
    sent.clear()  # the questions' own turn events
    for index, writer in enumerate(writers):
        writer.pending.append(f"answer {index} ")
        flusher._waiting[writer.answer_id] = writer  # waiting, not yet flushed

    assert await flusher.flush()

    assert [writer.outcomes for writer in writers] == [[True], [True], [True]]
    assert len(sent) == 1 and sent[0]["type"] == "hub.batch"
    assert sent[0]["fields"]["text"] == ["answer 0 ", "answer 1 ", "answer 2 "]
    stored = await texts_so_far(answer.pk for answer in answers)
    assert stored == {answer.pk: f"answer {i} " for i, answer in enumerate(answers)}


async def test_a_stopped_answer_is_refused_while_the_others_in_its_flush_are_written(ask, user):
    first, second = [await sync_to_async(ask)(f"question {i}") for i in range(2)]
    await sync_to_async(services.answer_stop)(user=user, answer_id=second.pk, position=0)
    flusher = Flusher()
    writers = [StoredAnswer(first, flusher), StoredAnswer(second, flusher)]
    for writer in writers:
        writer.pending.append("text")
        flusher._waiting[writer.answer_id] = writer

    assert await flusher.flush()

    assert [writer.outcomes for writer in writers] == [[True], [False]]
    assert await texts_so_far([second.pk]) == {second.pk: ""}


async def test_an_answers_first_text_does_not_wait_for_the_spacing_of_flushes(ask, settings):
    settings.ASSISTANT_FLUSH_MILLISECONDS = 60_000  # later flushes wait a minute
    first, second = [await sync_to_async(ask)(f"question {i}") for i in range(2)]
    flusher = Flusher()
    try:
        early, late = StoredAnswer(first, flusher), StoredAnswer(second, flusher)
        early.add("one ")
        await early.until_written(1)
        early.add("two ")  # waits for the spacing
        late.add("first words")  # its first text: flushed at once, with early's
        await late.until_written(1)
        assert late.outcomes == [True] and early.outcomes == [True, True]
    finally:
        await flusher.close()
    stored = await texts_so_far([first.pk, second.pk])
    assert stored == {first.pk: "one two ", second.pk: "first words"}
