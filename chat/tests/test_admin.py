"""The chat admin: rooms, memberships and messages; what would change open sockets is live.

Deleting a message (its page or the list's action) and removing a member (standalone or in
a room's inline) go through the services, so they are published after the admin's
transaction commits.
"""

import pytest
from django.contrib.admin.models import DELETION, LogEntry
from django.contrib.messages import get_messages

from chat import services
from chat.events import room_key
from chat.models import Membership, Message, Room
from chat.tests.factories import post

ROOMS = "/admin/chat/room/"
MEMBERSHIPS = "/admin/chat/membership/"
MESSAGES = "/admin/chat/message/"


@pytest.fixture
def staff_client(client, staff_user):
    client.force_login(staff_user)
    return client


@pytest.fixture
def stored(make_room, user, other_user):
    """Two rooms; alice's and bob's messages in the public one, alice's in the private."""
    lobby = make_room("lobby", members=[user, other_user])
    secret = make_room("secret", private=True, members=[user])
    return {
        "lobby": lobby,
        "secret": secret,
        "hello": post(user, lobby, "hello everyone"),
        "reply": post(other_user, lobby, "hi alice"),
        "private": post(user, secret, "just us"),
    }


def listed(response) -> set[str]:
    return {str(obj.pk) for obj in response.context["cl"].result_list}


def ids(*messages) -> set[str]:
    return {str(m.pk) for m in messages}


def messages_of(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def inline_data(room, rows, *, initial: int) -> dict:
    """The room change form with its membership inline, as the admin page posts it."""
    data = {
        "name": room.name,
        "slug": room.slug,
        "memberships-TOTAL_FORMS": str(len(rows)),
        "memberships-INITIAL_FORMS": str(initial),
        "memberships-MIN_NUM_FORMS": "0",
        "memberships-MAX_NUM_FORMS": "1000",
    }
    if room.is_private:
        data["is_private"] = "on"
    for n, row in enumerate(rows):
        for field, value in row.items():
            data[f"memberships-{n}-{field}"] = value
    return data


# Lists -------------------------------------------------------------------------------------


def test_lists_render_for_staff(staff_client, stored):
    for url in (ROOMS, MEMBERSHIPS, MESSAGES):
        assert staff_client.get(url).status_code == 200, url


def test_non_staff_are_sent_to_the_admin_login(user_client, stored):
    for url in (ROOMS, MEMBERSHIPS, MESSAGES):
        response = user_client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/")


def test_rooms_search_and_filter(staff_client, stored):
    expected = {
        "?q=lob": ids(stored["lobby"]),
        "?q=secret": ids(stored["secret"]),
        "?is_private__exact=1": ids(stored["secret"]),
        "?is_private__exact=0": ids(stored["lobby"]),
    }
    for query, rooms in expected.items():
        assert listed(staff_client.get(ROOMS + query)) == rooms, query


def test_messages_search_filters_and_date_hierarchy(staff_client, stored, staff_user):
    services.message_delete(user=staff_user, message=stored["reply"])
    year = stored["hello"].created_at.year
    expected = {
        "?q=everyone": ids(stored["hello"]),
        "?q=bob": ids(stored["reply"]),  # the author
        f"?room__id__exact={stored['secret'].pk}": ids(stored["private"]),
        "?deleted=yes": ids(stored["reply"]),
        "?deleted=no": ids(stored["hello"], stored["private"]),
        f"?created_at__year={year}": ids(stored["hello"], stored["reply"], stored["private"]),
        f"?created_at__year={year - 1}": set(),
    }
    for query, messages in expected.items():
        response = staff_client.get(MESSAGES + query)
        assert response.status_code == 200, query
        assert listed(response) == messages, query


def test_messages_cannot_be_added_or_edited_in_the_admin(staff_client, stored):
    assert staff_client.get(f"{MESSAGES}add/").status_code == 403
    message = stored["hello"]
    page = staff_client.get(f"{MESSAGES}{message.pk}/change/")
    assert page.status_code == 200  # a read-only view
    staff_client.post(f"{MESSAGES}{message.pk}/change/", {"body": "rewritten"})
    message.refresh_from_db()
    assert message.body == "hello everyone"


# Deleting messages -----------------------------------------------------------------------


def test_delete_action_goes_through_the_service(staff_client, stored, capture_published):
    selected = [stored["hello"].pk, stored["private"].pk]
    data = {"action": "delete_selected", "_selected_action": selected, "index": "0"}
    confirmation = staff_client.post(MESSAGES, data)
    assert confirmation.status_code == 200  # Django's "are you sure?" page
    with capture_published() as events:
        response = staff_client.post(MESSAGES, {**data, "post": "yes"})
    assert response.status_code == 302
    assert Message.objects.count() == 3  # the rows stay, marked deleted, without text
    deleted = Message.objects.filter(deleted_at__isnull=False)
    assert sorted(deleted.values_list("pk", flat=True)) == sorted(selected)
    assert set(deleted.values_list("body", flat=True)) == {""}
    assert sorted(events, key=lambda e: e[1]["id"]) == [
        (room_key(stored["lobby"].pk), {"kind": "message.deleted", "id": stored["hello"].pk}),
        (room_key(stored["secret"].pk), {"kind": "message.deleted", "id": stored["private"].pk}),
    ]
    assert LogEntry.objects.filter(action_flag=DELETION).count() == 2


def test_delete_page_goes_through_the_service(staff_client, stored, capture_published):
    message = stored["reply"]
    url = f"{MESSAGES}{message.pk}/delete/"
    assert staff_client.get(url).status_code == 200
    with capture_published() as events:
        response = staff_client.post(url, {"post": "yes"})
    assert response.status_code == 302
    message.refresh_from_db()
    assert (message.is_deleted, message.body) == (True, "")
    assert events == [(room_key(stored["lobby"].pk), {"kind": "message.deleted", "id": message.pk})]


def test_deleting_already_deleted_messages_publishes_nothing(
    staff_client, stored, staff_user, capture_published
):
    services.message_delete(user=staff_user, message=stored["hello"])
    data = {"action": "delete_selected", "_selected_action": [stored["hello"].pk], "post": "yes"}
    with capture_published() as events:
        response = staff_client.post(MESSAGES, data)
    assert "1 of them had been deleted already." in messages_of(response)
    assert events == []


# Memberships -------------------------------------------------------------------------------


def test_removing_a_member_in_the_room_inline_is_live(
    staff_client, stored, user, capture_published
):
    room = stored["secret"]
    membership = Membership.objects.get(room=room, user=user)
    rows = [{"id": membership.pk, "room": room.pk, "user": user.pk, "role": "member",
             "DELETE": "on"}]  # fmt: skip
    with capture_published() as events:
        response = staff_client.post(
            f"{ROOMS}{room.pk}/change/", inline_data(room, rows, initial=1)
        )
    assert response.status_code == 302, response.context and response.context["errors"]
    assert not Membership.objects.filter(room=room).exists()
    assert events == [(room_key(room.pk), {"kind": "member.removed", "user_id": user.pk})]


def test_adding_and_promoting_in_the_room_inline(staff_client, stored, user, other_user):
    room = stored["secret"]
    membership = Membership.objects.get(room=room, user=user)
    rows = [
        {"id": membership.pk, "room": room.pk, "user": user.pk, "role": "moderator"},
        {"room": room.pk, "user": other_user.pk, "role": "member"},
    ]
    response = staff_client.post(f"{ROOMS}{room.pk}/change/", inline_data(room, rows, initial=1))
    assert response.status_code == 302
    roles = dict(Membership.objects.filter(room=room).values_list("user__username", "role"))
    assert roles == {"alice": "moderator", "bob": "member"}
    # Added through the service: the new member starts with the history read.
    bob = Membership.objects.get(room=room, user=other_user)
    assert bob.last_read_message_id == stored["private"].pk


def test_creating_a_room_in_the_admin(staff_client, user):
    data = inline_data(Room(name="Ops", slug="ops"), [{"user": user.pk, "role": "moderator"}],
                       initial=0)  # fmt: skip
    response = staff_client.post(f"{ROOMS}add/", data)
    assert response.status_code == 302
    room = Room.objects.get()
    assert Membership.objects.get(room=room).role == "moderator"


def test_membership_admin_add_and_delete_go_through_services(
    staff_client, stored, other_user, capture_published
):
    room = stored["secret"]
    response = staff_client.post(
        f"{MEMBERSHIPS}add/", {"room": room.pk, "user": other_user.pk, "role": "member"}
    )
    assert response.status_code == 302
    membership = Membership.objects.get(room=room, user=other_user)
    assert membership.last_read_message_id == stored["private"].pk
    with capture_published() as events:
        response = staff_client.post(f"{MEMBERSHIPS}{membership.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not Membership.objects.filter(pk=membership.pk).exists()
    assert events == [(room_key(room.pk), {"kind": "member.removed", "user_id": other_user.pk})]


def test_membership_delete_action_is_live(staff_client, stored, user, capture_published):
    selected = list(Membership.objects.filter(user=user).values_list("pk", flat=True))
    with capture_published() as events:
        response = staff_client.post(
            MEMBERSHIPS,
            {"action": "delete_selected", "_selected_action": selected, "post": "yes"},
        )
    assert response.status_code == 302
    assert not Membership.objects.filter(user=user).exists()
    assert sorted(key for key, _ in events) == sorted(
        [room_key(stored["lobby"].pk), room_key(stored["secret"].pk)]
    )


def test_membership_room_and_user_are_read_only_when_editing(
    staff_client, stored, user, other_user
):
    membership = Membership.objects.get(room=stored["secret"], user=user)
    response = staff_client.post(
        f"{MEMBERSHIPS}{membership.pk}/change/",
        {"room": stored["lobby"].pk, "user": other_user.pk, "role": "moderator"},
    )
    assert response.status_code == 302
    membership.refresh_from_db()
    assert (membership.room, membership.user, membership.role) == (
        stored["secret"],
        user,
        "moderator",
    )


def test_deleting_rooms_in_the_admin_closes_their_sockets(staff_client, stored, capture_published):
    """The page's delete and the list's action both go through services.room_delete."""
    lobby, secret = stored["lobby"], stored["secret"]
    with capture_published() as events:
        response = staff_client.post(f"{ROOMS}{lobby.pk}/delete/", {"post": "yes"})
        assert response.status_code == 302
        response = staff_client.post(
            ROOMS, {"action": "delete_selected", "_selected_action": [secret.pk], "post": "yes"}
        )
        assert response.status_code == 302
    assert not Room.objects.exists()
    assert not Message.objects.exists()
    assert (room_key(lobby.pk), {"kind": "room.deleted"}) in events
    assert (room_key(secret.pk), {"kind": "room.deleted"}) in events
