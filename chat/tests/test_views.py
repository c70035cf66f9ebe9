"""The chat pages without a browser: lists, rooms, the no-JavaScript forms, export."""

import json
import uuid

import pytest
from asgiref.sync import sync_to_async
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from chat import selectors, services, views
from chat.events import room_key
from chat.models import Membership, Message, Room
from chat.tests.factories import add_messages, post
from notifications.events import user_key

pytestmark = pytest.mark.django_db

INDEX = reverse("chat:index")
XSS = "<img src=x onerror=alert(1)>"


def room_page(room, **query) -> str:
    url = reverse("chat:room", kwargs={"slug": room.slug})
    return url + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")


def post_url(room) -> str:
    return reverse("chat:post", kwargs={"slug": room.slug})


def rendered_ids(response) -> list[int]:
    return [m.pk for m in response.context["chat_messages"]]


@pytest.fixture
def csrf_client(user):
    """A logged-in client that checks CSRF tokens like a browser's requests are checked."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


def csrf_token(client, url: str) -> str:
    client.get(url)
    return client.cookies["csrftoken"].value


# Login ---------------------------------------------------------------------------------------


def test_pages_ask_anonymous_visitors_to_log_in(client, lobby):
    for url in (INDEX, room_page(lobby)):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))
    response = client.post(post_url(lobby), {"body": "hi"})
    assert response.status_code == 302
    assert not Message.objects.exists()


# The room list -------------------------------------------------------------------------------


def test_index_lists_visible_rooms_with_unread_counts(user_client, make_room, user, other_user):
    ops = make_room("ops", private=True, members=[user, other_user])
    make_room("theirs", private=True, members=[other_user])
    make_room("lobby")
    add_messages(ops, other_user, 4)
    response = user_client.get(INDEX)
    assert response.status_code == 200
    assert [room.slug for room in response.context["rooms"]] == ["lobby", "ops"]
    content = response.content.decode()
    assert 'data-unread="4" data-room-unread="ops">4<span> unread</span>' in content
    assert 'data-room="theirs"' not in content and "/chat/theirs/" not in content
    assert 'name="csrfmiddlewaretoken"' in content


def test_creating_a_room_redirects_to_it(user_client, user):
    response = user_client.post(INDEX, {"name": "Design Review", "slug": "", "is_private": "on"})
    room = Room.objects.get()
    assert response.status_code == 302
    assert response["Location"] == room_page(room)
    assert (room.slug, room.is_private) == ("design-review", True)
    assert Membership.objects.get(room=room).role == "moderator"


def test_creating_a_room_with_a_taken_slug_shows_the_error(user_client, make_room):
    make_room("ops")
    response = user_client.post(INDEX, {"name": "Ops again", "slug": "ops"})
    assert response.status_code == 200
    assert response.context["form"].errors == {"slug": ["A room with this slug already exists."]}
    assert Room.objects.count() == 1


def test_creating_a_room_needs_the_csrf_token(csrf_client):
    assert csrf_client.post(INDEX, {"name": "No token"}).status_code == 403
    assert not Room.objects.exists()
    token = csrf_token(csrf_client, INDEX)
    response = csrf_client.post(INDEX, {"name": "With token", "csrfmiddlewaretoken": token})
    assert response.status_code == 302
    assert Room.objects.get().slug == "with-token"


# A room --------------------------------------------------------------------------------------


def test_missing_room_is_404(user_client):
    assert user_client.get("/chat/nowhere/").status_code == 404
    assert user_client.post("/chat/nowhere/messages/", {"body": "x"}).status_code == 404


def test_private_room_of_others_is_403(client, private_room, other_user):
    client.force_login(other_user)
    assert client.get(room_page(private_room)).status_code == 403
    assert client.post(post_url(private_room), {"body": "let me in"}).status_code == 403
    assert not Message.objects.exists()


def test_room_renders_the_latest_50_oldest_first(user_client, lobby, other_user):
    messages = add_messages(lobby, other_user, 53)
    response = user_client.get(room_page(lobby))
    assert response.status_code == 200
    assert rendered_ids(response) == [m.pk for m in messages[-50:]]
    content = response.content.decode()
    positions = [content.index(f'id="message-{m.pk}"') for m in messages[-50:]]
    assert positions == sorted(positions)
    assert f'data-message-id="{messages[-1].pk}"' in content
    assert f'href="/chat/lobby/?before={messages[3].pk}"' in content  # older messages


def test_older_messages_without_javascript(user_client, lobby, other_user):
    messages = add_messages(lobby, other_user, 53)
    response = user_client.get(room_page(lobby, before=messages[3].pk))
    assert rendered_ids(response) == [m.pk for m in messages[:3]]
    assert "data-chat-older" not in response.content.decode()  # the oldest page
    assert user_client.get(room_page(lobby, before="x")).status_code == 400


def test_room_marks_where_the_browser_client_hooks_in(user_client, lobby, user):
    message = post(user, lobby)
    content = user_client.get(room_page(lobby)).content.decode()
    assert '<div id="chat"' in content
    assert 'data-room="lobby"' in content
    assert f'data-last-id="{message.pk}"' in content
    assert 'data-ws-path="/ws/chat/lobby/"' in content
    assert 'data-max-length="4000"' in content


def test_viewing_the_latest_messages_marks_them_read(user_client, private_room, user, other_user):
    messages = add_messages(private_room, other_user, 3)
    user_client.get(room_page(private_room))
    assert Membership.objects.get(user=user).last_read_message_id == messages[-1].pk
    assert selectors.rooms_for(user)[0].unread == 0


def test_deleted_messages_show_without_their_text(user_client, lobby, user, staff_user):
    message = post(user, lobby, "regrettable words")
    services.message_delete(user=staff_user, message=message)
    content = user_client.get(room_page(lobby)).content.decode()
    assert f'id="message-{message.pk}"' in content
    assert "message deleted" in content
    assert "regrettable" not in content


def test_user_text_is_escaped(user_client, make_user, lobby):
    """Stored XSS guard: a body (and a room name) with markup shows as text."""
    post(make_user("mallory"), lobby, XSS)
    Room.objects.filter(pk=lobby.pk).update(name=XSS)
    for url in (room_page(lobby), INDEX):
        content = user_client.get(url).content.decode()
        assert XSS not in content
        assert "&lt;img src=x onerror=alert(1)&gt;" in content


# Posting without JavaScript ------------------------------------------------------------------


def test_the_form_carries_a_fresh_client_id(user_client, lobby):
    first = user_client.get(room_page(lobby)).context["form"]["client_id"].value()
    second = user_client.get(room_page(lobby)).context["form"]["client_id"].value()
    assert uuid.UUID(str(first)) != uuid.UUID(str(second))


def test_posting_stores_publishes_and_goes_back_to_the_message(
    user_client, lobby, user, capture_published
):
    client_id = uuid.uuid4()
    with capture_published() as events:
        response = user_client.post(
            post_url(lobby), {"body": " hello there ", "client_id": str(client_id)}
        )
    message = Message.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/chat/lobby/#message-{message.pk}"
    assert (message.body, message.client_id, message.author) == ("hello there", client_id, user)
    assert [(key, event["kind"]) for key, event in events] == [
        (room_key(lobby.pk), "message"),
        # A first post joins the room: the author's streams follow it from now on.
        (user_key(user.pk), "watch.refresh"),
    ]


def test_submitting_the_same_form_twice_stores_one_message(user_client, lobby):
    data = {"body": "double click", "client_id": str(uuid.uuid4())}
    first = user_client.post(post_url(lobby), data)
    second = user_client.post(post_url(lobby), data)
    assert first["Location"] == second["Location"]
    assert Message.objects.count() == 1


def test_a_missing_or_bad_client_id_gets_a_new_one(user_client, lobby):
    user_client.post(post_url(lobby), {"body": "one"})
    user_client.post(post_url(lobby), {"body": "two", "client_id": "not-a-uuid"})
    assert Message.objects.count() == 2


@pytest.mark.parametrize(
    ("body", "error"),
    [("   ", "A message cannot be empty."), ("x" * 11, "at most 10 characters")],
)
def test_a_refused_message_shows_the_form_again_with_the_text(
    user_client, lobby, settings, body, error
):
    settings.CHAT_MAX_MESSAGE_LENGTH = 10
    response = user_client.post(post_url(lobby), {"body": body, "client_id": str(uuid.uuid4())})
    assert response.status_code == 400
    content = response.content.decode()
    assert error in content
    assert body.strip() in content  # nothing typed is lost
    assert not Message.objects.exists()


def test_posting_needs_the_csrf_token(csrf_client, lobby):
    assert csrf_client.post(post_url(lobby), {"body": "no token"}).status_code == 403
    assert not Message.objects.exists()
    token = csrf_token(csrf_client, room_page(lobby))
    response = csrf_client.post(post_url(lobby), {"body": "hi", "csrfmiddlewaretoken": token})
    assert response.status_code == 302
    assert Message.objects.get().body == "hi"


# Moderation ----------------------------------------------------------------------------------


def delete_url(message) -> str:
    return reverse("chat:delete", kwargs={"slug": message.room.slug, "message_id": message.pk})


def test_moderators_see_and_use_delete_buttons(
    client, make_room, user, moderator, capture_published
):
    room = make_room("ops", members=[user], moderators=[moderator])
    message = post(user, room, "delete me")
    client.force_login(moderator)
    assert delete_url(message) in client.get(room_page(room)).content.decode()
    with capture_published() as events:
        response = client.post(delete_url(message))
    assert response.status_code == 302
    assert Message.objects.get().is_deleted
    assert events == [(room_key(room.pk), {"kind": "message.deleted", "id": message.pk})]


def test_members_cannot_delete(user_client, make_room, user, other_user):
    room = make_room("ops", members=[user, other_user])
    message = post(other_user, room, "not yours")
    assert delete_url(message) not in user_client.get(room_page(room)).content.decode()
    assert user_client.post(delete_url(message)).status_code == 403
    assert not Message.objects.get().is_deleted


def test_moderators_add_and_remove_members(
    client, private_room, moderator, other_user, capture_published
):
    Membership.objects.create(room=private_room, user=moderator, role="moderator")
    client.force_login(moderator)
    add = reverse("chat:member_add", kwargs={"slug": "secret"})
    assert client.post(add, {"username": "bob"}).status_code == 302
    assert Membership.objects.filter(room=private_room, user=other_user).exists()
    assert client.post(add, {"username": "nobody"}).status_code == 302
    remove = reverse("chat:member_remove", kwargs={"slug": "secret", "user_id": other_user.pk})
    with capture_published() as events:
        assert client.post(remove).status_code == 302
    assert not Membership.objects.filter(room=private_room, user=other_user).exists()
    assert events == [
        (room_key(private_room.pk), {"kind": "member.removed", "user_id": other_user.pk})
    ]


def test_members_can_leave_but_not_remove_others(user_client, make_room, user, other_user):
    room = make_room("ops", private=True, members=[user, other_user])
    others = reverse("chat:member_remove", kwargs={"slug": "ops", "user_id": other_user.pk})
    assert user_client.post(others).status_code == 403
    add = reverse("chat:member_add", kwargs={"slug": "ops"})
    assert user_client.post(add, {"username": "staff"}).status_code == 403
    leave = reverse("chat:member_remove", kwargs={"slug": "ops", "user_id": user.pk})
    response = user_client.post(leave)
    assert response["Location"] == INDEX
    assert list(Membership.objects.filter(room=room).values_list("user", flat=True)) == [
        other_user.pk
    ]


# Export --------------------------------------------------------------------------------------


def export_url(room) -> str:
    return reverse("chat:export", kwargs={"slug": room.slug})


async def download(async_client, url: str):
    response = await async_client.get(url)
    body = b""
    if response.streaming:
        body = b"".join([chunk async for chunk in response.streaming_content])
    else:
        body = response.content
    return response, body


@pytest.mark.django_db(transaction=True)
async def test_export_is_the_rooms_history_as_ndjson(async_client, make_room, make_user):
    def setup():
        alice, bob, staff = make_user("alice"), make_user("bob"), make_user("s", is_staff=True)
        room = make_room("ops", private=True, members=[alice, bob])
        first = post(alice, room, "first\nline")
        second = post(bob, room, XSS)
        deleted = post(alice, room, "gone")
        services.message_delete(user=staff, message=deleted)
        return alice, room, [first, second, Message.objects.get(pk=deleted.pk)]

    alice, room, messages = await sync_to_async(setup)()
    await async_client.aforce_login(alice)
    response, body = await download(async_client, export_url(room))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/x-ndjson; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="chat-ops.ndjson"'
    lines = body.decode().splitlines()
    assert body.endswith(b"\n") and len(lines) == 3
    rows = [json.loads(line) for line in lines]
    first, _second, deleted = messages
    assert rows[0] == {
        "id": first.pk,
        "client_id": str(first.client_id),
        "room": "ops",
        "author": {"id": alice.pk, "username": "alice"},
        "body": "first\nline",
        "created_at": first.created_at.isoformat(),
        "edited_at": None,
        "deleted_at": None,
    }
    assert rows[1]["body"] == XSS  # data, not HTML: escaping is the reader's business
    assert "body" not in rows[2]
    assert rows[2]["deleted_at"] == deleted.deleted_at.isoformat()


@pytest.mark.django_db(transaction=True)
async def test_export_is_for_members_only(async_client, make_room, make_user):
    def setup():
        alice, bob = make_user("alice"), make_user("bob")
        return alice, bob, make_user("s", is_staff=True), make_room("ops", members=[alice])

    alice, bob, staff, room = await sync_to_async(setup)()
    response, body = await download(async_client, export_url(room))
    assert (response.status_code, body) == (403, b"Log in to export a room.\n")
    await async_client.aforce_login(bob)  # may read this public room, but is not a member
    response, body = await download(async_client, export_url(room))
    assert (response.status_code, body) == (403, b"Only the room's members can export it.\n")
    response, _ = await download(async_client, "/chat/nowhere/export.ndjson")
    assert response.status_code == 404
    for member_or_staff in (alice, staff):
        await async_client.aforce_login(member_or_staff)
        response, body = await download(async_client, export_url(room))
        assert (response.status_code, body) == (200, b"")  # the room is empty


@pytest.mark.django_db(transaction=True)
async def test_export_lines_are_chunked_and_close_the_rows_early(make_room, make_user, monkeypatch):
    def setup():
        room = make_room("ops")
        add_messages(room, make_user("writer"), 1001)
        add_messages(room, make_user("ghost"), 1, body="", deleted_at=timezone.now())
        return room

    room = await sync_to_async(setup)()
    chunks = [chunk async for chunk in views.export_lines(room, rows_per_chunk=500)]
    assert [chunk.count(b"\n") for chunk in chunks] == [500, 500, 2]

    closed = []
    real_rows = selectors.messages_for_export

    async def watched_rows(room_id, **options):
        try:
            async for row in real_rows(room_id, **options):
                yield row
        finally:
            closed.append(True)

    monkeypatch.setattr(selectors, "messages_for_export", watched_rows)
    lines = views.export_lines(room, rows_per_chunk=10)
    assert (await anext(lines)).count(b"\n") == 10
    await lines.aclose()  # the client went away: what Django's handler does
    assert closed == [True]


# The room's layout ------------------------------------------------------------------------


def test_room_page_marks_days_groups_and_lists_the_rooms(user_client, user, other_user, make_room):
    """A day separator before the first message, one author's run grouped, and the rooms
    sidebar with the current room marked and other rooms' unread counts."""
    room = make_room("ops", members=[user, other_user])
    elsewhere = make_room("dev", members=[user, other_user])
    add_messages(room, other_user, 2)
    add_messages(elsewhere, other_user, 4)
    html = user_client.get(room_page(room)).content.decode()
    assert html.count('<li class="chat-day"><span>Today</span></li>') == 1
    assert html.count(" is-continued") == 1
    sidebar = html.split('data-testid="chat-room-links"', 1)[1].split("</ul>", 1)[0]
    assert 'href="/chat/ops/" aria-current="page"' in sidebar
    assert 'data-unread="4"' in sidebar
