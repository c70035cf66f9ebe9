"""The notifications admin, and the user list's "Send notification" action.

Whatever staff create or mark read in the admin goes through the services, so it is
published after the admin's transaction commits, like any other notification.
"""

import pytest
from django.contrib.admin.models import ADDITION, LogEntry
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.test import Client

from notifications import services
from notifications.events import user_key
from notifications.models import Notification

NOTIFICATIONS = "/admin/notifications/notification/"
USERS = "/admin/auth/user/"


@pytest.fixture
def staff_client(client, staff_user):
    client.force_login(staff_user)
    return client


@pytest.fixture
def stored(user, other_user):
    """Three notifications: alice's unread info and read error, bob's read warning."""
    deploy = services.notification_create(recipient=user, title="Deploy finished")
    disk = services.notification_create(
        recipient=other_user, title="Disk", body="nearly full", level="warning"
    )
    failed = services.notification_create(recipient=user, title="Backup failed", level="error")
    services.notifications_mark_read_many(notification_ids=[disk.pk, failed.pk])
    return {"deploy": deploy, "disk": disk, "failed": failed}


def grant(user, *codenames: str):
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))


def messages_of(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def listed(response) -> set[str]:
    return {notification.title for notification in response.context["cl"].result_list}


# The notification list ------------------------------------------------------------------


def test_changelist_lists_every_notification_with_its_columns(staff_client, stored):
    response = staff_client.get(NOTIFICATIONS)
    assert response.status_code == 200
    assert listed(response) == {"Deploy finished", "Disk", "Backup failed"}
    content = response.content.decode()
    for column in ("column-id", "column-to", "column-title", "column-level"):
        assert column in content
    assert "column-created_at" in content and "column-read" in content


def test_filters_search_and_date_hierarchy_select_the_right_rows(staff_client, stored, other_user):
    year = stored["deploy"].created_at.year
    expected = {
        "?level__exact=warning": {"Disk"},
        "?read=unread": {"Deploy finished"},
        "?read=read": {"Disk", "Backup failed"},
        f"?recipient__id__exact={other_user.pk}": {"Disk"},
        "?q=deploy": {"Deploy finished"},
        "?q=nearly": {"Disk"},  # the body
        "?q=bob": {"Disk"},  # the recipient's username
        f"?created_at__year={year}": {"Deploy finished", "Disk", "Backup failed"},
        f"?created_at__year={year - 1}": set(),
    }
    for query, titles in expected.items():
        response = staff_client.get(NOTIFICATIONS + query)
        assert response.status_code == 200, query
        assert listed(response) == titles, query


def test_filter_sidebar_offers_level_read_and_recipient(staff_client, stored):
    content = staff_client.get(NOTIFICATIONS).content.decode()
    assert "?read=unread" in content and "?read=read" in content
    assert "?level__exact=warning" in content
    assert "?recipient__id__exact=" in content


def test_non_staff_are_sent_to_the_admin_login(user_client, stored):
    for url in (NOTIFICATIONS, f"{NOTIFICATIONS}add/", USERS):
        response = user_client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/")


# Adding and editing -----------------------------------------------------------------------


def test_add_page_renders_without_created_or_read_fields(staff_client):
    response = staff_client.get(f"{NOTIFICATIONS}add/")
    assert response.status_code == 200
    form = response.context["adminform"].form
    assert list(form.fields) == ["recipient", "title", "body", "url", "level"]


def test_adding_stores_one_row_and_publishes_it_after_commit(
    staff_client, staff_user, user, capture_published
):
    with capture_published() as events:
        response = staff_client.post(
            f"{NOTIFICATIONS}add/",
            {"recipient": user.pk, "title": "From staff", "body": "hi", "url": "/chat/",
             "level": "success"},
        )  # fmt: skip
    assert response.status_code == 302
    assert response["Location"] == NOTIFICATIONS
    notification = Notification.objects.get()
    assert (notification.recipient, notification.title, notification.level) == (
        user,
        "From staff",
        "success",
    )
    assert events == [
        (
            user_key(user.pk),
            {"kind": "created", **notification.as_event(), "unread": 1, "previous": 0},
        )
    ]
    entry = LogEntry.objects.get()
    assert (entry.user, entry.action_flag, entry.object_id) == (
        staff_user,
        ADDITION,
        str(notification.pk),
    )


def test_add_and_continue_editing_goes_to_the_stored_row(staff_client, user, capture_published):
    with capture_published():
        response = staff_client.post(
            f"{NOTIFICATIONS}add/",
            {"recipient": user.pk, "title": "Again", "level": "info", "_continue": "1"},
        )
    notification = Notification.objects.get()
    assert response["Location"] == f"{NOTIFICATIONS}{notification.pk}/change/"


def test_adding_an_invalid_notification_stores_and_publishes_nothing(
    staff_client, user, capture_published
):
    with capture_published() as events:
        response = staff_client.post(
            f"{NOTIFICATIONS}add/",
            {"recipient": user.pk, "title": "", "url": "javascript:alert(1)", "level": "info"},
        )
    assert response.status_code == 200
    assert set(response.context["adminform"].form.errors) == {"title", "url"}
    assert not Notification.objects.exists()
    assert events == []


def test_editing_saves_the_text_without_publishing(staff_client, stored, capture_published):
    deploy = stored["deploy"]
    with capture_published() as events:
        response = staff_client.post(
            f"{NOTIFICATIONS}{deploy.pk}/change/",
            {"title": "Deploy finished (v2)", "body": "", "url": "", "level": "info"},
        )
    assert response.status_code == 302
    deploy.refresh_from_db()
    assert deploy.title == "Deploy finished (v2)"
    assert events == []


def test_recipient_and_read_state_are_read_only_when_editing(staff_client, stored, other_user):
    deploy = stored["deploy"]
    response = staff_client.get(f"{NOTIFICATIONS}{deploy.pk}/change/")
    assert response.status_code == 200
    assert list(response.context["adminform"].form.fields) == ["title", "body", "url", "level"]
    staff_client.post(
        f"{NOTIFICATIONS}{deploy.pk}/change/",
        {"recipient": other_user.pk, "read_at_0": "2020-01-01", "title": "x", "level": "info"},
    )
    deploy.refresh_from_db()
    assert (deploy.recipient_id, deploy.read_at) == (stored["deploy"].recipient_id, None)


# Delete -----------------------------------------------------------------------------------


def test_deleting_in_the_admin_updates_the_count_and_open_pages(
    staff_client, stored, user, capture_published
):
    deploy, failed = stored["deploy"], stored["failed"]  # unread, read
    with capture_published() as events:
        response = staff_client.post(
            NOTIFICATIONS,
            {
                "action": "delete_selected",
                "_selected_action": [deploy.pk, failed.pk],
                "post": "yes",
            },
        )
    assert response.status_code == 302
    assert not Notification.objects.filter(pk__in=[deploy.pk, failed.pk]).exists()
    assert events == [
        (
            user_key(user.pk),
            {"kind": "deleted", "ids": sorted([deploy.pk, failed.pk]), "unread": 0},
        )
    ]
    with capture_published() as events:
        another = services.notification_create(recipient=user, title="Another")
        staff_client.post(f"{NOTIFICATIONS}{another.pk}/delete/", {"post": "yes"})
    assert events[-1] == (user_key(user.pk), {"kind": "deleted", "ids": [another.pk], "unread": 0})


# Mark read --------------------------------------------------------------------------------


def test_mark_read_action_publishes_one_read_event_per_recipient(
    staff_client, stored, user, capture_published
):
    another = services.notification_create(recipient=user, title="Another")
    selected = [stored["deploy"].pk, stored["disk"].pk, another.pk]  # "disk" was read
    with capture_published() as events:
        response = staff_client.post(
            NOTIFICATIONS, {"action": "mark_read", "_selected_action": selected, "index": "0"}
        )
    assert response.status_code == 302
    assert messages_of(response) == ["Marked 2 notifications read."]
    assert not Notification.objects.filter(read_at__isnull=True).exists()
    ((key, event),) = events  # one UPDATE, one event for the one recipient
    assert key == user_key(user.pk)
    assert event == {
        "kind": "read",
        "ids": sorted([stored["deploy"].pk, another.pk]),
        "up_to": None,
        "unread": 0,
    }


# The user list's "Send notification" action ----------------------------------------------


def choose_users(client, users, **extra):
    """Pick the action for ``users`` on the user list, as the changelist form posts it."""
    return client.post(
        USERS,
        {
            "action": "send_notification",
            "_selected_action": [u.pk for u in users],
            "index": "0",
            **extra,
        },
    )


def send_to(client, users, **fields):
    """Submit the intermediate page for ``users``."""
    data = {"title": "Hello", "body": "", "url": "", "level": "info", **fields}
    return client.post(
        USERS,
        {
            "action": "send_notification",
            "_selected_action": [u.pk for u in users],
            "select_across": "0",
            "send": "yes",
            **data,
        },
    )


def test_user_list_offers_the_action(staff_client):
    response = staff_client.get(USERS)
    assert response.status_code == 200
    assert b"Send notification to selected users" in response.content


def test_action_shows_an_intermediate_page_with_a_form(
    staff_client, user, other_user, capture_published
):
    with capture_published() as events:
        response = choose_users(staff_client, [user, other_user])
    assert response.status_code == 200
    assert "admin/notifications/send_notification.html" in [t.name for t in response.templates]
    content = response.content.decode()
    assert "csrfmiddlewaretoken" in content
    for name in ("title", "body", "url", "level"):
        assert f'name="{name}"' in content
    assert "alice" in content and "bob" in content
    assert f'name="_selected_action" value="{user.pk}"' in content
    assert 'name="send" value="yes"' in content
    assert not Notification.objects.exists()
    assert events == []


def test_submitting_notifies_the_selected_users_and_publishes(
    staff_client, user, other_user, make_user, capture_published
):
    bystander = make_user("carol")
    with capture_published() as events:
        response = send_to(
            staff_client, [user, other_user], title="Hello", url="/chat/", level="warning"
        )
    assert response.status_code == 302
    assert response["Location"] == USERS
    assert messages_of(response) == ["Sent “Hello” to 2 users."]
    rows = {n.recipient_id: n for n in Notification.objects.all()}
    assert sorted(rows) == sorted([user.pk, other_user.pk])
    assert bystander.pk not in rows
    assert {(n.title, n.url, n.level) for n in rows.values()} == {("Hello", "/chat/", "warning")}
    assert sorted(events, key=lambda e: e[0]) == sorted(
        [
            (
                user_key(u.pk),
                {"kind": "created", **rows[u.pk].as_event(), "unread": 1, "previous": 0},
            )
            for u in (user, other_user)
        ],
        key=lambda e: e[0],
    )


def test_inactive_selected_users_are_skipped_and_reported(staff_client, user, make_user):
    sleeper = make_user("sleeper", is_active=False)
    page = choose_users(staff_client, [user, sleeper])
    summary = " ".join(page.content.decode().split())
    assert "2 users selected; only the 1 active one will be notified" in summary
    response = send_to(staff_client, [user, sleeper])
    assert messages_of(response) == ["Sent “Hello” to 1 user.", "Skipped 1 inactive user."]
    assert list(Notification.objects.values_list("recipient_id", flat=True)) == [user.pk]


def test_select_across_notifies_every_user_of_the_list(staff_client, user, make_user):
    others = [make_user(f"user{n}") for n in range(3)]
    response = send_to(staff_client, [user], select_across="1")
    assert response.status_code == 302
    recipients = set(Notification.objects.values_list("recipient_id", flat=True))
    assert {user.pk, *(o.pk for o in others)} <= recipients


@pytest.mark.parametrize(
    ("fields", "invalid"),
    [
        ({"title": ""}, "title"),
        ({"url": "javascript:alert(1)"}, "url"),
        ({"level": "critical"}, "level"),
        ({"title": "x" * 201}, "title"),
        ({"body": "x" * 5001}, "body"),
    ],
)
def test_invalid_submission_shows_the_page_again_and_sends_nothing(
    staff_client, user, capture_published, fields, invalid
):
    with capture_published() as events:
        response = send_to(staff_client, [user], **fields)
    assert response.status_code == 200
    assert set(response.context["form"].errors) == {invalid}
    assert not Notification.objects.exists()
    assert events == []


def test_staff_with_the_add_permission_can_send(client, make_user, user):
    editor = make_user("editor", is_staff=True)
    grant(editor, "view_user", "add_notification")
    client.force_login(editor)
    assert b"Send notification to selected users" in client.get(USERS).content
    assert choose_users(client, [user]).status_code == 200
    response = send_to(client, [user])
    assert response.status_code == 302
    assert Notification.objects.filter(recipient=user).count() == 1


def test_staff_without_the_add_permission_cannot_send(client, make_user, user):
    clerk = make_user("clerk", is_staff=True)
    # delete_user gives the clerk one action (delete), so the action machinery runs and
    # refuses ours as not offered, rather than the list simply having no actions.
    grant(clerk, "view_user", "delete_user", "view_notification", "change_notification")
    client.force_login(clerk)
    user_list = client.get(USERS).content
    assert b"Delete selected users" in user_list
    assert b"Send notification to selected users" not in user_list
    for response in (choose_users(client, [user]), send_to(client, [user])):
        assert response.status_code == 302
        assert "No action selected." in messages_of(response)
    assert not Notification.objects.exists()


def test_non_staff_cannot_send(user_client, user):
    response = send_to(user_client, [user])
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    assert not Notification.objects.exists()


def test_submitting_without_a_csrf_token_is_refused(staff_user, user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff_user)
    response = send_to(client, [user])
    assert response.status_code == 403
    assert not Notification.objects.exists()
