"""The assistant admin: read-only lists and pages, Stop through the service, usage by user.

Staff never edit an answer here: its text and status change only through the services,
and the one write, "Stop selected answers", goes through ``services.answer_stop``, so open
pages and the generating process hear of it after commit.
"""

import datetime
import uuid
from urllib.parse import urlencode

import pytest
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from assistant import events, services
from assistant.events import Route
from assistant.models import Answer, Conversation, DailyUsage
from assistant.upstream.base import Usage

CONVERSATIONS = "/admin/assistant/conversation/"
ANSWERS = "/admin/assistant/answer/"
USAGE = "/admin/assistant/dailyusage/"
SUMMARY = "/admin/assistant/dailyusage/summary/"

Status = Answer.Status


@pytest.fixture
def staff_client(client, staff_user):
    client.force_login(staff_user)
    return client


def answer_to(user, conversation, text: str, *, model: str = "") -> Answer:
    """A streaming answer to a new question, as ``services.question_ask`` stores it."""
    return services.question_ask(
        user=user,
        conversation_id=conversation.pk,
        text=text,
        client_id=uuid.uuid4(),
        model=model,
    ).answer


def finish(answer: Answer, text: str, *, status=Status.COMPLETE, usage=None) -> Answer:
    """Write ``text`` and a final status through the services, as the runner does."""
    services.answer_append(
        answer_id=answer.pk,
        route=Route(answer.conversation_id),
        start=0,
        text=text,
        first_token_ms=120,
    )
    return services.answer_finish(answer_id=answer.pk, status=status, usage=usage)


@pytest.fixture
def stored(conversation, user, other_user):
    """Alice: a complete answer (gpt-a) and a streaming one (gpt-b); Bob: a failed one (gpt-a)."""
    done = finish(
        answer_to(user, conversation, "What is SSE?", model="gpt-a"),
        "Server-sent events.",
        usage=Usage(10, 20, estimated=True),
    )
    running = answer_to(user, conversation, "And WebSockets?", model="gpt-b")
    bobs = services.conversation_create(owner=other_user, title="Bob's")
    failed = finish(
        answer_to(other_user, bobs, "Why Redis?", model="gpt-a"), "", status=Status.FAILED
    )
    return {"done": done, "running": running, "failed": failed, "bobs": bobs}


def since_midnight(field: str, *, before: bool = False) -> str:
    """The query string of a date filter's link: ``field`` from (or before) today, UTC."""
    midnight = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    return "?" + urlencode({f"{field}__{'lt' if before else 'gte'}": str(midnight)})


def listed(response) -> set[int]:
    return {obj.pk for obj in response.context["cl"].result_list}


def messages_of(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def stop(client, *answers):
    """Run the Stop action on ``answers``, following its redirect (which shows the messages)."""
    response = client.post(
        ANSWERS,
        {"action": "stop_answers", "_selected_action": [a.pk for a in answers]},
        follow=True,
    )
    assert response.redirect_chain == [(ANSWERS, 302)]
    return response


# Lists ------------------------------------------------------------------------------------


def test_lists_and_the_summary_render_for_staff(staff_client, stored):
    for url in (CONVERSATIONS, ANSWERS, USAGE, SUMMARY):
        assert staff_client.get(url).status_code == 200, url
    for answer in ("done", "running", "failed"):
        url = f"{ANSWERS}{stored[answer].pk}/change/"
        assert staff_client.get(url).status_code == 200, url
    url = f"{CONVERSATIONS}{stored['bobs'].pk}/change/"
    assert staff_client.get(url).status_code == 200


def test_non_staff_are_sent_to_the_admin_login(user_client, stored):
    for url in (CONVERSATIONS, ANSWERS, USAGE, SUMMARY, f"{ANSWERS}{stored['done'].pk}/change/"):
        response = user_client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/admin/login/"), url


def test_answer_filters_and_search_select_the_right_rows(staff_client, stored):
    done, running, failed = stored["done"], stored["running"], stored["failed"]
    expected = {
        "": {done.pk, running.pk, failed.pk},
        "?status__exact=streaming": {running.pk},
        "?status__exact=failed": {failed.pk},
        "?model=gpt-a": {done.pk, failed.pk},
        "?model=gpt-b": {running.pk},
        "?model=gpt-gone": set(),
        "?usage_estimated__exact=1": {done.pk},
        since_midnight("started_at"): {done.pk, running.pk, failed.pk},
        since_midnight("started_at", before=True): set(),
        "?q=bob": {failed.pk},  # the owner's username
        "?q=websockets": {running.pk},  # the question
        f"?conversation__id__exact={stored['bobs'].pk}": {failed.pk},
    }
    for query, ids in expected.items():
        response = staff_client.get(ANSWERS + query)
        assert response.status_code == 200, query
        assert listed(response) == ids, query


def test_answer_list_shows_its_columns_and_offers_recent_models(staff_client, stored):
    content = staff_client.get(ANSWERS).content.decode()
    for column in (
        "id", "conversation", "owner", "status", "model", "tokens", "usage_estimated",
        "first_token_ms", "started_at", "finished_at", "duration",
    ):  # fmt: skip
        assert f"column-{column}" in content, column
    assert "?model=gpt-a" in content and "?model=gpt-b" in content
    assert "?status__exact=streaming" in content and "?usage_estimated__exact=1" in content


def test_conversation_list_counts_answers_filters_and_searches(staff_client, stored, conversation):
    response = staff_client.get(CONVERSATIONS)
    counts = {c.pk: c.answer_count for c in response.context["cl"].result_list}
    assert counts == {conversation.pk: 2, stored["bobs"].pk: 1}
    assert f"{ANSWERS}?conversation__id__exact={conversation.pk}" in response.content.decode()
    expected = {
        "?q=bob": {stored["bobs"].pk},  # the owner's username
        "?q=websockets": set(),  # titles only: the title is the first question
        "?q=sse": {conversation.pk},
        since_midnight("created_at"): {conversation.pk, stored["bobs"].pk},
        since_midnight("updated_at", before=True): set(),
    }
    for query, ids in expected.items():
        response = staff_client.get(CONVERSATIONS + query)
        assert response.status_code == 200, query
        assert listed(response) == ids, query


def test_conversation_page_shows_its_answers_read_only(staff_client, stored, conversation):
    response = staff_client.get(f"{CONVERSATIONS}{conversation.pk}/change/")
    content = response.content.decode()
    assert "Server-sent events." in content and "And WebSockets?" in content
    assert f"{ANSWERS}{stored['done'].pk}/change/" in content  # each answer links to its page
    assert "<textarea" not in content and 'name="title"' not in content


def test_conversation_page_lists_only_the_latest_answers_inline(
    staff_client, conversation, user, monkeypatch
):
    from assistant import admin as assistant_admin

    monkeypatch.setattr(assistant_admin, "INLINE_ANSWERS", 2)
    for n in range(3):
        finish(answer_to(user, conversation, f"question {n}"), f"reply {n}")
    content = staff_client.get(f"{CONVERSATIONS}{conversation.pk}/change/").content.decode()
    assert "reply 2" in content and "reply 1" in content and "reply 0" not in content
    assert f"{ANSWERS}?conversation__id__exact={conversation.pk}" in content


@pytest.mark.parametrize("url", [CONVERSATIONS, ANSWERS, USAGE])
def test_lists_cost_the_same_queries_for_one_row_or_many(staff_client, user, url):
    """No query per row: owners, conversations and counts come with the page."""

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert staff_client.get(url).status_code == 200
        return len(captured)

    conversation = services.conversation_create(owner=user, title="first")
    finish(answer_to(user, conversation, "one", model="m"), "1", usage=Usage(1, 1))
    with_one = queries()
    for n in range(4):
        other = services.conversation_create(owner=user, title=f"more {n}")
        finish(answer_to(user, other, f"q {n}", model=f"m{n}"), "x", usage=Usage(1, 1))
    DailyUsage.objects.create(user=user, day=timezone.now().date() - datetime.timedelta(days=1))
    assert queries() == with_one


# Read-only answers ------------------------------------------------------------------------


def test_answers_cannot_be_added_changed_or_deleted_here(staff_client, stored):
    done = stored["done"]
    assert staff_client.get(f"{ANSWERS}add/").status_code == 403
    response = staff_client.post(
        f"{ANSWERS}{done.pk}/change/", {"text": "rewritten", "status": Status.FAILED}
    )
    assert response.status_code == 403
    response = staff_client.post(f"{ANSWERS}{done.pk}/delete/", {"post": "yes"})
    assert response.status_code == 403
    response = staff_client.post(
        ANSWERS, {"action": "delete_selected", "_selected_action": [done.pk], "post": "yes"}
    )
    done.refresh_from_db()
    assert (done.text, done.status) == ("Server-sent events.", Status.COMPLETE)
    page = staff_client.get(f"{ANSWERS}{done.pk}/change/")
    assert '<textarea name="text"' not in page.content.decode()
    assert "delete_selected" not in staff_client.get(ANSWERS).content.decode()
    assert Answer.objects.filter(pk=done.pk).exists()
    assert staff_client.get(f"{CONVERSATIONS}add/").status_code == 403


# Stop -------------------------------------------------------------------------------------


def test_stop_action_stops_a_streaming_answer_and_publishes_it(
    staff_client, stored, capture_published
):
    running = stored["running"]
    services.answer_append(
        answer_id=running.pk, route=Route(running.conversation_id), start=0, text="Full-du"
    )
    with capture_published() as published:
        response = stop(staff_client, running)
    running.refresh_from_db()
    assert running.status == Status.STOPPED and running.text == "Full-du"
    assert running.finished_at is not None
    conversation_events = [
        event for key, event in published if key == events.conversation_key(running.conversation_id)
    ]
    assert conversation_events == [events.done_event(running)]
    assert (events.control_key(running.pk), events.stop_event(running.pk)) in published
    assert messages_of(response) == ["Stopped 1 answer."]


def test_stop_action_leaves_finished_answers_alone_and_says_so(
    staff_client, stored, capture_published
):
    done, failed, running = stored["done"], stored["failed"], stored["running"]
    with capture_published() as published:
        response = stop(staff_client, done, failed)
    assert published == []
    assert messages_of(response) == ["2 answers were already finished."]
    done.refresh_from_db()
    assert (done.status, done.text) == (Status.COMPLETE, "Server-sent events.")

    with capture_published():
        response = stop(staff_client, done, running)
    assert messages_of(response) == ["Stopped 1 answer.", "1 answer was already finished."]
    running.refresh_from_db()
    assert running.status == Status.STOPPED


def test_staff_who_may_only_view_answers_are_not_offered_stop(client, make_user, stored):
    viewer = make_user("viewer", is_staff=True)
    viewer.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_answer", "view_conversation"])
    )
    client.force_login(viewer)
    response = client.get(ANSWERS)
    assert response.status_code == 200
    assert "stop_answers" not in response.content.decode()
    response = client.post(
        ANSWERS, {"action": "stop_answers", "_selected_action": [stored["running"].pk]}
    )
    assert response.status_code == 200
    stored["running"].refresh_from_db()
    assert stored["running"].status == Status.STREAMING


# Usage ------------------------------------------------------------------------------------


def test_usage_summary_aggregates_per_user_and_window(staff_client, user, other_user, make_user):
    today = timezone.now().date()
    carol = make_user("carol")
    rows = [  # (user, days ago, tokens, answers)
        (user, 0, 100, 2), (user, 3, 1000, 5), (user, 20, 10_000, 9), (user, 30, 99_999, 1),
        (other_user, 0, 5000, 1), (other_user, 6, 7, 1), (other_user, 7, 50, 2),
        (carol, 45, 1, 1),
    ]  # fmt: skip
    DailyUsage.objects.bulk_create(
        DailyUsage(user=u, day=today - datetime.timedelta(days=ago), tokens=t, answers=a)
        for u, ago, t, a in rows
    )
    alice = [(100, 2), (1100, 7), (11_100, 16)]
    bob = [(5000, 1), (5007, 2), (5057, 4)]
    response = staff_client.get(SUMMARY)
    assert response.status_code == 200
    figures = [(row["username"], row["figures"]) for row in response.context["rows"]]
    assert figures == [("alice", alice), ("bob", bob)]  # carol: nothing in 30 days
    for order, first in (("today", "bob"), ("week", "bob"), ("month", "alice"), ("bad", "alice")):
        response = staff_client.get(f"{SUMMARY}?order={order}")
        assert response.status_code == 200, order
        assert response.context["rows"][0]["username"] == first, order
    content = response.content.decode()
    assert "<td>11100</td><td>16</td>" in content
    assert f"{USAGE}?user__id__exact={user.pk}" in content
    assert staff_client.get(f"{USAGE}?user__id__exact={user.pk}").status_code == 200


def test_usage_summary_lists_at_most_the_top_users(staff_client, make_user, monkeypatch):
    from assistant import admin as assistant_admin

    monkeypatch.setattr(assistant_admin, "SUMMARY_USERS", 2)
    today = timezone.now().date()
    DailyUsage.objects.bulk_create(
        DailyUsage(user=make_user(f"user{n}"), day=today, tokens=n, answers=1) for n in range(4)
    )
    response = staff_client.get(SUMMARY)
    assert [row["username"] for row in response.context["rows"]] == ["user3", "user2"]


def test_usage_list_filters_by_day_searches_and_links_the_summary(staff_client, user, other_user):
    today = timezone.now().date()
    old = DailyUsage.objects.create(user=user, day=today - datetime.timedelta(days=40), tokens=3)
    new = DailyUsage.objects.create(user=other_user, day=today, tokens=5)
    response = staff_client.get(USAGE)
    assert listed(response) == {old.pk, new.pk}
    assert SUMMARY in response.content.decode()
    assert listed(staff_client.get(f"{USAGE}?day__gte={today}")) == {new.pk}
    assert listed(staff_client.get(f"{USAGE}?q=alice")) == {old.pk}
    assert staff_client.get(f"{USAGE}add/").status_code == 403


# Escaping ---------------------------------------------------------------------------------


def test_user_text_is_escaped_everywhere_it_is_shown(staff_client, conversation, user):
    answer = answer_to(user, conversation, "<script>alert('question')</script>")
    finish(answer, "<script>alert('answer')</script>")
    pages = [
        CONVERSATIONS,
        f"{CONVERSATIONS}{conversation.pk}/change/",
        ANSWERS,
        f"{ANSWERS}{answer.pk}/change/",
    ]
    for url in pages:
        content = staff_client.get(url).content.decode()
        assert "<script>alert" not in content, url
        assert "&lt;script&gt;alert(" in content, url
    content = staff_client.get(f"{ANSWERS}{answer.pk}/change/").content.decode()
    assert "&lt;script&gt;alert(&#x27;answer&#x27;)&lt;/script&gt;" in content
    assert Conversation.objects.get().title.startswith("<script>")
