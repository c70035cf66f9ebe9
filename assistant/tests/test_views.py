"""The assistant's HTTP API and pages: every refusal clear, before any upstream call."""

import datetime
import json
import uuid

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from assistant import services
from assistant.events import Route
from assistant.models import Answer, DailyUsage, Question

# The API views run their queries on db_call threads: they see only committed rows.
pytestmark = pytest.mark.django_db(transaction=True)


def ask_url(conversation):
    return reverse("assistant:messages", kwargs={"conversation_id": conversation.pk})


def post_json(client, url, payload, **headers):
    body = payload if isinstance(payload, (str, bytes)) else json.dumps(payload)
    return client.post(url, body, content_type="application/json", **headers)


def question(text="What is SSE?"):
    return {"prompt": text, "client_id": str(uuid.uuid4())}


def test_asking_needs_a_login(client, conversation):
    response = post_json(client, ask_url(conversation), question())
    assert response.status_code == 403 and "Log in" in response.json()["error"]


def test_asking_needs_the_csrf_token(user, conversation):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    response = post_json(client, ask_url(conversation), question())
    assert response.status_code == 403
    assert not Question.objects.exists()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("not json", "Send JSON"),
        ("[1, 2]", "Send JSON"),
        (b"\xff\xfe", "Send JSON"),
        ({"prompt": "hi", "client_id": "nope"}, "client_id must be a UUID"),
        ({"prompt": "hi"}, "client_id must be a UUID"),
        ({"prompt": "  ", "client_id": str(uuid.uuid4())}, "empty"),
        ({"prompt": ["x"], "client_id": str(uuid.uuid4())}, "must be text"),
    ],
)
def test_bad_requests_get_400_with_a_reason(user_client, conversation, body, message):
    response = post_json(user_client, ask_url(conversation), body)
    assert response.status_code == 400 and message in response.json()["error"]
    assert not Question.objects.exists()


def test_another_users_conversation_is_404(client, other_user, conversation):
    client.force_login(other_user)
    assert post_json(client, ask_url(conversation), question()).status_code == 404
    stream = reverse("assistant:stream", kwargs={"conversation_id": conversation.pk})
    assert client.get(stream).status_code == 404
    page = reverse("assistant:conversation", kwargs={"conversation_id": conversation.pk})
    assert client.get(page).status_code == 404


def test_over_the_concurrent_limit_the_answer_is_409_with_the_running_ones_url(
    user_client, ask, settings
):
    """With the default limit of two, the third answer running at once is refused."""
    assert settings.ASSISTANT_MAX_CONCURRENT == 2
    running = ask("first")
    ask("second")
    response = post_json(user_client, ask_url(running.conversation), question("third"))
    assert response.status_code == 409
    body = response.json()
    assert body["answer"] == running.pk and body["running"].endswith(f"#answer-{running.pk}")
    assert Question.objects.count() == 2


def test_a_spent_budget_is_429_with_when_it_resets(user_client, user, conversation, settings):
    settings.ASSISTANT_DAILY_TOKENS = 10
    DailyUsage.objects.create(user=user, day=timezone.now().date(), tokens=10)
    response = post_json(user_client, ask_url(conversation), question())
    assert response.status_code == 429
    resets = datetime.datetime.fromisoformat(response.json()["resets_at"])
    assert resets > timezone.now() and int(response["Retry-After"]) > 0


def test_the_stream_refuses_strangers_and_malformed_positions(client, user, conversation):
    url = reverse("assistant:stream", kwargs={"conversation_id": conversation.pk})
    assert client.get(url).status_code == 403
    client.force_login(user)
    response = client.get(url, HTTP_LAST_EVENT_ID="12")
    assert response.status_code == 400 and b"<answer>:<position>" in response.content
    assert client.get(url + "?after=x:1").status_code == 400


def test_stop_cuts_at_the_position_and_answers_json(user_client, ask):
    answer = ask()
    services.answer_append(
        answer_id=answer.pk, route=Route(answer.conversation_id), start=0, text="abcdef"
    )
    url = reverse(
        "assistant:stop",
        kwargs={"conversation_id": answer.conversation_id, "answer_id": answer.pk},
    )
    response = post_json(user_client, url, {"position": 4})
    assert response.json() == {"answer": answer.pk, "status": "stopped", "position": 4}
    assert Answer.objects.get(pk=answer.pk).text == "abcd"
    assert post_json(user_client, url, {"position": 1}).json()["position"] == 4  # idempotent


@pytest.mark.parametrize("position", [-1, "x", True, 1.5, 2**40])
def test_stop_refuses_a_bad_position(user_client, ask, position):
    answer = ask()
    url = reverse(
        "assistant:stop",
        kwargs={"conversation_id": answer.conversation_id, "answer_id": answer.pk},
    )
    response = post_json(user_client, url, {"position": position})
    assert response.status_code == 400
    assert Answer.objects.get(pk=answer.pk).is_streaming


def test_nobody_stops_another_users_answer(client, other_user, ask):
    answer = ask()
    client.force_login(other_user)
    url = reverse(
        "assistant:stop",
        kwargs={"conversation_id": answer.conversation_id, "answer_id": answer.pk},
    )
    assert post_json(client, url, {}).status_code == 404
    assert Answer.objects.get(pk=answer.pk).is_streaming


def test_the_stop_form_without_javascript_goes_back_to_the_conversation(user_client, ask):
    answer = ask()
    url = reverse(
        "assistant:stop",
        kwargs={"conversation_id": answer.conversation_id, "answer_id": answer.pk},
    )
    response = user_client.post(url)
    assert response.status_code == 302 and response["Location"].endswith(f"#answer-{answer.pk}")
    assert Answer.objects.get(pk=answer.pk).status == "stopped"


def test_the_page_shows_text_as_text_and_the_offline_note(user_client, ask):
    answer = ask("<script>alert(1)</script>")
    services.answer_append(
        answer_id=answer.pk,
        route=Route(answer.conversation_id),
        start=0,
        text="<img src=x onerror=alert(1)>",
    )
    page = reverse("assistant:conversation", kwargs={"conversation_id": answer.conversation_id})
    html = user_client.get(page).content.decode()
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<script>alert(1)" not in html
    assert "offline docs assistant" in html and "LLM_BASE_URL" in html
    assert f'data-cursor="{answer.pk}:28"' in html


def test_the_list_shows_only_the_users_conversations(user_client, conversation, other_user):
    services.conversation_create(owner=other_user, title="Not yours")
    html = user_client.get(reverse("assistant:index")).content.decode()
    assert conversation.title in html and "Not yours" not in html


def test_pages_need_a_login(client, conversation):
    response = client.get(reverse("assistant:index"))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
