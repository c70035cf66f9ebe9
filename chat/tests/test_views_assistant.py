"""The assistant on the chat pages without a browser: its answers, Stop, the room's switch,
the export (chat.views)."""

import json

import pytest
from django.urls import reverse

from assistant import services as assistant_services
from assistant.events import Route
from assistant.models import Answer
from chat.models import Membership, Message, Room
from chat.tests.factories import in_plain_thread, post, room_with
from chat.tests.test_views import XSS, download, export_url, room_page

pytestmark = pytest.mark.django_db


@pytest.fixture
def room(user, moderator):
    return room_with("lobby", members=[user], moderators=[moderator], assistant=True)


def ask(user, room, question="@assistant explain") -> Message:
    """Ask the assistant; return the message showing its answer."""
    post(user, room, question)
    return Message.objects.get(room=room, assistant_answer_id__isnull=False)


def write(message: Message, text: str) -> None:
    """The assistant writes ``text`` into the answer (what its generation does)."""
    answer = Answer.objects.get(pk=message.assistant_answer_id)
    assistant_services.answer_append(
        answer_id=answer.pk, route=Route.of(answer), start=answer.position, text=text
    )


def stop_url(message: Message) -> str:
    return reverse("chat:answer_stop", kwargs={"slug": "lobby", "message_id": message.pk})


def test_an_answer_shows_as_the_assistant_s_asked_by_who_asked_as_text(client, room, user):
    answer = ask(user, room)
    write(answer, XSS)
    client.force_login(user)
    content = client.get(room_page(room)).content.decode()
    assert XSS not in content and "&lt;img src=x onerror=alert(1)&gt;" in content
    assert 'class="chat-message is-assistant"' in content
    assert f'data-status="streaming" data-position="{len(XSS)}"' in content
    assert "asked by alice" in content and "writing…" in content
    assert 'data-testid="chat-assistant-hint"' in content


@pytest.mark.parametrize(
    ("who", "sees_stop"), [("asker", True), ("moderator", True), ("bob", False)]
)
def test_the_stop_button_is_for_who_asked_and_moderators(
    client, room, user, moderator, other_user, who, sees_stop
):
    Membership.objects.create(room=room, user=other_user)
    answer = ask(user, room)
    client.force_login({"asker": user, "moderator": moderator, "bob": other_user}[who])
    content = client.get(room_page(room)).content.decode()
    assert (stop_url(answer) in content) is sees_stop


def test_stop_without_javascript_keeps_the_text_and_goes_back(client, room, user, other_user):
    answer = ask(user, room)
    write(answer, "Half an answer")
    Membership.objects.create(room=room, user=other_user)
    client.force_login(other_user)
    assert client.post(stop_url(answer)).status_code == 403
    client.force_login(user)
    response = client.post(stop_url(answer))
    assert response.status_code == 302
    assert response["Location"] == f"/chat/lobby/#message-{answer.pk}"
    stopped = Answer.objects.get(pk=answer.assistant_answer_id)
    assert (stopped.status, stopped.text) == ("stopped", "Half an answer")
    content = client.get(room_page(room)).content.decode()
    assert stop_url(answer) not in content and "stopped" in content


def test_stopping_a_message_that_is_not_an_answer_is_404(client, room, user):
    message = post(user, room, "plain")
    client.force_login(user)
    assert client.post(stop_url(message)).status_code == 404


def test_moderators_turn_the_assistant_on_and_off_from_the_page(client, room, user, moderator):
    url = reverse("chat:assistant", kwargs={"slug": "lobby"})
    client.force_login(user)
    assert 'data-testid="chat-assistant-toggle"' not in client.get(room_page(room)).content.decode()
    assert client.post(url, {"enabled": "0"}).status_code == 403
    client.force_login(moderator)
    assert "Turn the assistant off" in client.get(room_page(room)).content.decode()
    assert client.post(url, {"enabled": "0"}).status_code == 302
    assert Room.objects.get(pk=room.pk).assistant_enabled is False
    content = client.get(room_page(room)).content.decode()
    assert "Turn the assistant on" in content and "chat-assistant-hint" not in content


def test_a_refused_question_posted_without_javascript_says_why(client, room, user, settings):
    settings.ASSISTANT_MAX_CONCURRENT = 1
    ask(user, room)
    client.force_login(user)
    response = client.post(
        reverse("chat:post", kwargs={"slug": "lobby"}), {"body": "@assistant again"}, follow=True
    )
    assert Message.objects.filter(body="@assistant again").exists()
    assert "still answering" in response.content.decode()


@pytest.mark.django_db(transaction=True)
async def test_the_export_has_the_answers_with_their_text(async_client, user, moderator):
    def setup():
        room = room_with("lobby", members=[user], moderators=[moderator], assistant=True)
        answer = ask(user, room)
        write(answer, "The answer")
        return room, answer

    room, answer = await in_plain_thread(setup)
    await async_client.aforce_login(user)
    _response, body = await download(async_client, export_url(room))
    question, line = (json.loads(line) for line in body.decode().splitlines())
    assert "assistant" not in question
    assert line["id"] == answer.pk and line["author"]["username"] == "alice"
    assert (line["assistant"], line["body"], line["status"]) == (True, "The answer", "streaming")
