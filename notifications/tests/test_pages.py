"""The notification pages without a browser: the list, mark read, and the bell's state."""

import re

import pytest
from django.contrib.auth.models import AnonymousUser
from django.test import Client
from django.urls import reverse

from notifications import services
from notifications.context_processors import BELL_LATEST, bell
from notifications.models import Notification
from notifications.views import LIST_PAGE_SIZE

pytestmark = pytest.mark.django_db

BELL_CONTEXT_PROCESSOR = "notifications.context_processors.bell"
LIST_URL = reverse("notifications:list")
MARK_ALL_URL = reverse("notifications:mark_all_read")


@pytest.fixture(autouse=True)
def bell_context_processor(settings):
    """Render pages with the bell's context processor (settings may not list it yet)."""
    processors = settings.TEMPLATES[0]["OPTIONS"]["context_processors"]
    if BELL_CONTEXT_PROCESSOR not in processors:
        settings.TEMPLATES = [
            {
                **settings.TEMPLATES[0],
                "OPTIONS": {
                    **settings.TEMPLATES[0]["OPTIONS"],
                    "context_processors": [*processors, BELL_CONTEXT_PROCESSOR],
                },
            }
        ]


def notify(user, title="Hello", **fields) -> Notification:
    return services.notification_create(recipient=user, title=title, **fields)


def mark_read_url(notification) -> str:
    return reverse("notifications:mark_read", args=[notification.pk])


def is_read(notification) -> bool:
    notification.refresh_from_db()
    return notification.is_read


# The list ------------------------------------------------------------------------------


def test_the_list_asks_anonymous_visitors_to_log_in(client):
    response = client.get(LIST_URL)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_the_list_shows_the_users_notifications_newest_first(user_client, user, other_user):
    older = notify(user, "Older", body="line one\nline two", url="/chat/lobby/", level="warning")
    notify(user, "Newer")
    notify(other_user, "Not yours")
    services.notification_mark_read(user=user, notification_id=older.pk)

    response = user_client.get(LIST_URL)

    assert response.status_code == 200
    html = response.content.decode()
    assert [n.title for n in response.context["page"]] == ["Newer", "Older"]
    assert "Not yours" not in html
    item = html[html.index(f'id="notification-{older.pk}"') :]
    assert '<a href="/chat/lobby/">Older</a>' in item
    assert "line one<br>line two" in item
    assert "Warning" in item
    assert "is-read" in html[: html.index(f'id="notification-{older.pk}"')].rsplit("<li", 1)[1]
    assert f'<form method="post" action="{mark_read_url(older)}"' not in html


def test_the_list_escapes_html_in_titles_and_bodies(user_client, user):
    notify(user, "<img src=x onerror=alert(1)>", body="<script>alert(2)</script>\nnext")

    html = user_client.get(LIST_URL).content.decode()

    assert "<img src=x" not in html
    assert "<script>alert(2)" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "&lt;script&gt;alert(2)&lt;/script&gt;<br>next" in html


def test_the_list_is_paginated(user_client, user):
    services.notifications_create_many(recipients=[user], title="ignored")  # one
    for number in range(LIST_PAGE_SIZE + 4):
        notify(user, f"Number {number}")

    first = user_client.get(LIST_URL)
    second = user_client.get(LIST_URL, {"page": 2})
    beyond = user_client.get(LIST_URL, {"page": 99})
    garbage = user_client.get(LIST_URL, {"page": "x"})

    assert len(first.context["page"]) == LIST_PAGE_SIZE
    assert first.context["page"][0].title == f"Number {LIST_PAGE_SIZE + 3}"
    assert 'href="?page=2"' in first.content.decode()
    assert len(second.context["page"]) == 5
    assert second.context["page"][4].title == "ignored"
    assert 'href="?page=1"' in second.content.decode()
    assert beyond.context["page"].number == 2
    assert garbage.context["page"].number == 1


def test_the_list_of_a_user_without_notifications_says_so(user_client):
    html = user_client.get(LIST_URL).content.decode()
    assert "No notifications yet." in html
    assert "Mark all read" not in html.split('class="content"', 1)[1]


# Mark read -----------------------------------------------------------------------------


def test_marking_one_read_redirects_back_to_next(user_client, user):
    notification = notify(user)

    response = user_client.post(mark_read_url(notification), {"next": "/notifications/?page=1"})

    assert response.status_code == 302
    assert response["Location"] == "/notifications/?page=1"
    assert is_read(notification)


def test_marking_read_goes_back_to_the_list_rather_than_to_another_site(user_client, user):
    notification = notify(user)

    response = user_client.post(mark_read_url(notification), {"next": "https://evil.example/"})

    assert response["Location"] == LIST_URL
    assert is_read(notification)


def test_marking_read_twice_says_it_was_already_read(user_client, user):
    notification = notify(user)
    user_client.post(mark_read_url(notification))

    response = user_client.post(mark_read_url(notification), follow=True)

    assert "That notification was already read." in response.content.decode()


def test_another_users_notification_cannot_be_marked_read(user_client, other_user):
    theirs = notify(other_user)

    response = user_client.post(mark_read_url(theirs))

    assert response.status_code == 302
    assert not is_read(theirs)


def test_marking_read_answers_the_pages_script_with_json(user_client, user, other_user):
    notification = notify(user)
    notify(user, "Still unread")
    theirs = notify(other_user)

    response = user_client.post(mark_read_url(notification), headers={"Accept": "application/json"})
    refused = user_client.post(mark_read_url(theirs), headers={"Accept": "application/json"})

    assert response.json() == {"changed": 1, "ids": [notification.pk], "up_to": None, "unread": 1}
    assert refused.json() == {"changed": 0, "ids": [theirs.pk], "up_to": None, "unread": 1}
    assert not is_read(theirs)


def test_mark_read_takes_only_post(user_client, user):
    notification = notify(user)
    assert user_client.get(mark_read_url(notification)).status_code == 405
    assert user_client.get(MARK_ALL_URL).status_code == 405
    assert not is_read(notification)


def test_marking_all_read_marks_only_the_users_own(user_client, user, other_user):
    mine = [notify(user, "One"), notify(user, "Two")]
    theirs = notify(other_user)

    response = user_client.post(MARK_ALL_URL, follow=True)

    assert all(is_read(notification) for notification in mine)
    assert not is_read(theirs)
    assert "Marked 2 notifications read." in response.content.decode()


def test_marking_all_read_answers_the_pages_script_with_json(user_client, user):
    notify(user, "One")
    latest = notify(user, "Two")

    response = user_client.post(MARK_ALL_URL, headers={"Accept": "application/json"})

    assert response.json() == {"changed": 2, "ids": None, "up_to": latest.pk, "unread": 0}


def test_mark_read_needs_a_login(client, user):
    notification = notify(user)
    response = client.post(mark_read_url(notification))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))
    assert not is_read(notification)


def test_mark_read_needs_the_csrf_token(user):
    """A POST without the token is refused (403); with the page's token it works."""
    notification = notify(user)
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)

    refused_one = browser.post(mark_read_url(notification))
    refused_all = browser.post(MARK_ALL_URL)
    assert refused_one.status_code == 403
    assert refused_all.status_code == 403
    assert not is_read(notification)

    page = browser.get(LIST_URL).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    accepted = browser.post(mark_read_url(notification), {"csrfmiddlewaretoken": token})
    assert accepted.status_code == 302
    assert is_read(notification)

    # The page's script sends the cookie's token in a header instead.
    other = notify(user)
    header = browser.post(
        mark_read_url(other),
        headers={"X-CSRFToken": browser.cookies["csrftoken"].value, "Accept": "application/json"},
    )
    assert header.json()["changed"] == 1


# The bell ------------------------------------------------------------------------------


def test_the_context_processor_gives_anonymous_visitors_no_bell(rf):
    request = rf.get("/")
    request.user = AnonymousUser()
    assert bell(request) == {}


def test_the_context_processor_gives_the_bells_state_in_four_queries(
    rf, user, other_user, django_assert_num_queries
):
    for number in range(BELL_LATEST + 2):
        notify(user, f"Number {number}")
    notify(other_user, "Not yours")
    services.notification_mark_read(
        user=user, notification_id=Notification.objects.filter(recipient=user).earliest("id").pk
    )
    request = rf.get("/")
    request.user = user

    with django_assert_num_queries(0):
        context = bell(request)  # lazy: nothing until a template asks
    with django_assert_num_queries(4):  # counter, own rows, announcements, their count
        state = dict(context["bell"])

    newest = Notification.objects.filter(recipient=user).latest("id")
    assert state["unread"] == BELL_LATEST + 1
    assert [n.title for n in state["latest"]] == [
        f"Number {number}" for number in range(BELL_LATEST + 1, 1, -1)
    ]
    assert state["last_id"] == newest.pk


def test_the_context_processor_of_a_user_without_notifications(rf, user):
    request = rf.get("/")
    request.user = user
    assert dict(bell(request)["bell"]) == {"unread": 0, "latest": [], "last_id": 0}


def test_every_page_renders_the_bell_for_a_logged_in_user(user_client, user):
    notify(user, "First", url="/notifications/")
    latest = notify(user, "<b>Second</b>", body="Body text")

    html = user_client.get(reverse("home")).content.decode()

    assert f'data-last-event-id="{latest.pk}"' in html
    assert re.search(r'data-testid="bell-count"\s*>2<', html)
    assert "&lt;b&gt;Second&lt;/b&gt;" in html
    assert '<a href="/notifications/">First</a>' in html
    assert f'action="{mark_read_url(latest)}"' in html
    assert f'href="{LIST_URL}">See all</a>' in html
    assert 'type="module" src="/static/js/notifications.js"' in html


def test_the_bell_count_is_hidden_at_zero_and_anonymous_pages_have_no_bell(client, user):
    client.force_login(user)
    assert re.search(r'data-testid="bell-count"\s*hidden>0<', client.get("/").content.decode())
    client.logout()
    html = client.get("/").content.decode()
    assert "data-notification-bell" not in html
    assert "notifications.js" not in html


def test_the_admin_header_has_the_bell_and_keeps_its_links(client, staff_user):
    notify(staff_user, "For staff")
    client.force_login(staff_user)

    html = client.get(reverse("admin:index")).content.decode()

    user_tools = html[html.index('id="user-tools"') :]
    assert "data-notification-bell" in user_tools
    assert re.search(r'data-testid="bell-count"\s*>1<', user_tools)
    assert "For staff" in user_tools
    for link in ("View site", "Change password", "Log out"):
        assert link in user_tools
    assert "/static/css/notifications.css" in html
    assert 'type="module" src="/static/js/notifications.js"' in html
    assert "/static/css/site.css" not in html  # the site's global rules stay out of the admin


SCRIPT_LINKS = [
    "javascript:alert(document.cookie)",
    "JavaScript:alert(1)",
    " javascript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "//evil.example/",
    "/\\evil.example/",
]


@pytest.mark.parametrize("url", SCRIPT_LINKS)
def test_a_script_url_written_past_validation_is_not_rendered_as_a_link(user_client, user, url):
    """Issue #13: a notification whose url is ``javascript:...``, written around the
    services' validation (an import, a data migration, the ORM), was a working link in the
    list and the bell. The title shows, as text; the safe links around it stay."""
    Notification.objects.create(recipient=user, title="Click me", url=url)  # no validation
    notify(user, "Fine", url="/chat/")

    for page in (LIST_URL, reverse("home")):  # the list; the home page draws the bell
        html = user_client.get(page).content.decode()
        assert "Click me" in html
        assert not re.search(r"href=\"\s*(javascript|data):", html, re.IGNORECASE), page
        assert 'href="//evil' not in html and "evil.example" not in html
        assert '<a href="/chat/">Fine</a>' in html


@pytest.mark.parametrize("url", SCRIPT_LINKS)
def test_a_script_url_written_past_validation_is_sent_to_streams_as_no_link(user, url):
    notification = Notification.objects.create(recipient=user, title="Click me", url=url)
    assert notification.as_event()["url"] == ""
    assert Notification(url="https://example.com/x?a=1").as_event()["url"] == (
        "https://example.com/x?a=1"
    )
