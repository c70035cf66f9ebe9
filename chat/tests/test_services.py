"""Services write what they should and publish it only after the transaction commits."""

import asyncio
import json
import uuid

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from chat import services
from chat.events import message_payload, room_key
from chat.models import Membership, Message, Room
from chat.tests.factories import add_messages, post, room_with
from notifications.events import user_key
from notifications.models import Notification
from streamsite.streaming.hub import HUB_GROUP, Hub, expand_message

pytestmark = pytest.mark.django_db


def membership(room, user) -> Membership | None:
    return Membership.objects.filter(room=room, user=user).first()


# room_create -------------------------------------------------------------------------------


def test_create_room_makes_the_creator_its_moderator(capture_published, user):
    with capture_published() as events:
        room = services.room_create(creator=user, name="  Release planning ", is_private=True)
    assert (room.name, room.slug, room.is_private) == ("Release planning", "release-planning", True)
    assert membership(room, user).role == "moderator"
    assert events == []  # a new room has no sockets to tell


def test_create_room_finds_a_free_slug_from_the_name(user):
    slugs = [services.room_create(creator=user, name="Ops").slug for _ in range(3)]
    assert slugs == ["ops", "ops-2", "ops-3"]
    assert services.room_create(creator=user, name="!!!").slug == "room"


def test_create_room_with_a_given_slug(user):
    room = services.room_create(creator=user, name="Anything", slug="  Team-A ")
    assert room.slug == "team-a"


@pytest.mark.parametrize(
    ("fields", "field", "code"),
    [
        pytest.param({"name": "Taken", "slug": "taken"}, "slug", "unique", id="slug-taken"),
        pytest.param({"name": "Bad", "slug": "no spaces/please"}, "slug", "invalid", id="bad-slug"),
        pytest.param({"name": "   "}, "name", "blank", id="blank-name"),
        pytest.param({"name": "x" * 101}, "name", "max_length", id="long-name"),
        pytest.param({"name": "a\x00b", "slug": "nul"}, "name", "null_characters_not_allowed",
                     id="nul-name"),
    ],
)  # fmt: skip
def test_create_room_refuses_invalid_fields(user, make_room, fields, field, code):
    make_room("taken")
    with pytest.raises(ValidationError) as error:
        services.room_create(creator=user, **fields)
    assert [e.code for e in error.value.error_dict[field]] == [code]
    assert Room.objects.count() == 1


@pytest.mark.parametrize("who", ["anonymous", "inactive"])
def test_create_room_needs_an_active_user(make_user, who):
    creator = AnonymousUser() if who == "anonymous" else make_user("gone", is_active=False)
    with pytest.raises(PermissionDenied):
        services.room_create(creator=creator, name="Nope")
    assert not Room.objects.exists()


# Memberships -------------------------------------------------------------------------------


def test_add_member_starts_with_history_read(private_room, user, other_user):
    messages = add_messages(private_room, user, 3)
    member, created = services.membership_add(room=private_room, user=other_user)
    assert created
    assert (member.role, member.last_read_message_id) == ("member", messages[-1].pk)


def test_add_existing_member_keeps_their_place_and_changes_only_a_given_role(
    private_room, user, capture_published
):
    Membership.objects.filter(room=private_room, user=user).update(last_read_message_id=7)
    with capture_published() as events:
        member, created = services.membership_add(room=private_room, user=user)
        assert (created, member.role, member.last_read_message_id) == (False, "member", 7)
        member, created = services.membership_add(room=private_room, user=user, role="moderator")
    assert membership(private_room, user).role == "moderator"
    assert events == []


def test_remove_member_publishes_member_removed(private_room, user, capture_published):
    with capture_published() as events:
        assert services.membership_remove(room=private_room, user=user) is True
        assert events == []  # not before the commit
    assert membership(private_room, user) is None
    assert events == [(room_key(private_room.pk), {"kind": "member.removed", "user_id": user.pk})]


def test_removing_a_non_member_publishes_nothing(private_room, other_user, capture_published):
    with capture_published() as events:
        assert services.membership_remove(room=private_room, user=other_user) is False
    assert events == []


def test_mark_read_moves_forward_only_and_not_past_the_latest(private_room, user, other_user):
    messages = add_messages(private_room, other_user, 3)
    assert services.membership_mark_read(user=user, room=private_room, up_to=messages[1].pk)
    assert membership(private_room, user).last_read_message_id == messages[1].pk
    assert not services.membership_mark_read(user=user, room=private_room, up_to=messages[0].pk)
    assert membership(private_room, user).last_read_message_id == messages[1].pk
    assert services.membership_mark_read(user=user, room=private_room, up_to=10**12)
    assert membership(private_room, user).last_read_message_id == messages[2].pk
    with pytest.raises(ValueError):
        services.membership_mark_read(user=user, room=private_room, up_to=-1)


def test_mark_read_of_a_non_member_changes_nothing(lobby, user, other_user):
    add_messages(lobby, other_user, 1)
    assert services.membership_mark_read(user=user, room=lobby, up_to=10) is False
    assert not Membership.objects.exists()


# message_post ------------------------------------------------------------------------------


def test_post_stores_trimmed_text_and_publishes_after_commit(capture_published, private_room, user):
    client_id = uuid.uuid4()
    with capture_published() as events:
        message, created = services.message_post(
            user=user, room=private_room, client_id=client_id, body="  hello\nworld \n"
        )
        assert events == []
    assert created
    stored = Message.objects.get()
    assert (stored.pk, stored.author, stored.body, stored.client_id) == (
        message.pk,
        user,
        "hello\nworld",
        client_id,
    )
    assert events == [
        (
            room_key(private_room.pk),
            {
                "kind": "message",
                "message": {
                    "id": stored.pk,
                    "client_id": str(client_id),
                    "room": "secret",
                    "author": {"id": user.pk, "username": "alice"},
                    "body": "hello\nworld",
                    "created_at": stored.created_at.isoformat(),
                },
            },
        )
    ]


def test_a_message_event_names_the_message_before_it_in_the_room(
    capture_published, private_room, user
):
    """``previous``: what lets a socket notice an event that overtook an earlier one
    (chat.outbox). The room's first message has none; the next names it."""
    with capture_published() as events:
        first, _ = services.message_post(
            user=user, room=private_room, client_id=uuid.uuid4(), body="a"
        )
        second, _ = services.message_post(
            user=user, room=private_room, client_id=uuid.uuid4(), body="b"
        )
    assert [event.get("previous") for _key, event in events] == [None, first.pk]
    assert second.pk > first.pk


def test_sending_the_same_client_id_again_stores_and_publishes_nothing(
    capture_published, private_room, user
):
    client_id = uuid.uuid4()
    first, created = services.message_post(
        user=user, room=private_room, client_id=client_id, body="once"
    )
    assert created
    with capture_published() as events:
        again, created = services.message_post(
            user=user, room=private_room, client_id=str(client_id), body="a different body"
        )
    assert (again.pk, again.body, created) == (first.pk, "once", False)
    assert message_payload(again) == message_payload(first)  # the same ack, room and author
    assert Message.objects.count() == 1
    assert events == []


def test_a_send_that_loses_a_race_returns_the_winner(
    capture_published, private_room, user, monkeypatch
):
    """Two sends of one client_id at once: the loser's insert fails on the unique
    constraint, inside a savepoint, so the caller's transaction goes on (PostgreSQL would
    otherwise refuse every later statement) and it gets the winner's message."""
    client_id = uuid.uuid4()
    winner = Message.objects.create(room=private_room, author=user, client_id=client_id, body="1")
    # As if the winner committed between this send's check and its insert.
    monkeypatch.setattr(services, "_sent_before", lambda room, user, client_id: None)
    with capture_published() as events, transaction.atomic():
        message, created = services.message_post(
            user=user, room=private_room, client_id=client_id, body="2"
        )
        assert (message.pk, created) == (winner.pk, False)
        assert Message.objects.count() == 1  # the transaction is still usable
    assert events == []


@pytest.mark.parametrize(
    ("body", "code"),
    [
        pytest.param("", "blank", id="empty"),
        pytest.param(" \n\t ", "blank", id="whitespace"),
        pytest.param("x" * 11, "too_long", id="too-long"),
        pytest.param("a\x00b", "null_characters_not_allowed", id="nul"),
        pytest.param(None, "invalid", id="not-text"),
    ],
)
def test_post_refuses_bodies_it_cannot_store(
    capture_published, private_room, user, settings, body, code
):
    settings.CHAT_MAX_MESSAGE_LENGTH = 10
    with capture_published() as events, pytest.raises(ValidationError) as error:
        services.message_post(user=user, room=private_room, client_id=uuid.uuid4(), body=body)
    assert error.value.code == code
    assert not Message.objects.exists()
    assert events == []


def test_length_is_counted_after_trimming(private_room, user, settings):
    settings.CHAT_MAX_MESSAGE_LENGTH = 10
    assert post(user, private_room, "   " + "x" * 10 + "   ").body == "x" * 10


def test_post_refuses_a_client_id_that_is_not_a_uuid(private_room, user):
    with pytest.raises(ValidationError) as error:
        services.message_post(user=user, room=private_room, client_id="1234", body="hi")
    assert error.value.code == "invalid"


@pytest.mark.parametrize("who", ["outsider", "staff", "anonymous", "inactive member"])
def test_only_members_post_in_a_private_room(
    capture_published, private_room, other_user, staff_user, make_user, who
):
    poster = {
        "outsider": other_user,
        "staff": staff_user,
        "anonymous": AnonymousUser(),
        "inactive member": make_user("gone", is_active=False),
    }[who]
    if who == "inactive member":
        Membership.objects.create(room=private_room, user=poster)
    with capture_published() as events, pytest.raises(PermissionDenied):
        services.message_post(user=poster, room=private_room, client_id=uuid.uuid4(), body="x")
    assert not Message.objects.exists()
    assert events == []


def test_a_removed_member_cannot_resend_either(private_room, user):
    client_id = uuid.uuid4()
    post(user, private_room, client_id=client_id)
    services.membership_remove(room=private_room, user=user)
    with pytest.raises(PermissionDenied):
        services.message_post(user=user, room=private_room, client_id=client_id, body="hello")


def test_first_post_in_a_public_room_joins_it_with_everything_read(lobby, user, other_user):
    add_messages(lobby, other_user, 2)
    assert membership(lobby, user) is None
    message = post(user, lobby)
    joined = membership(lobby, user)
    assert (joined.role, joined.last_read_message_id) == ("member", message.pk)


def test_posting_marks_the_room_read_up_to_the_message(private_room, user, other_user):
    add_messages(private_room, other_user, 2)
    message = post(user, private_room)
    assert membership(private_room, user).last_read_message_id == message.pk


# Mentions ----------------------------------------------------------------------------------


@pytest.fixture
def team(make_user, make_room, user, other_user):
    """A public room where alice (author), bob and carol are members; dave is not."""
    carol, dave = make_user("carol"), make_user("dave")
    room = make_room("team", members=[user, other_user, carol])
    return {"room": room, "alice": user, "bob": other_user, "carol": carol, "dave": dave}


def notified(user) -> list[Notification]:
    return list(Notification.objects.filter(recipient=user))


def test_mention_notifies_the_member_named(capture_published, team):
    with capture_published() as events:
        message = post(team["alice"], team["room"], "@bob can you look at this?")
    (notification,) = notified(team["bob"])
    assert notification.title == "alice mentioned you in #team"
    assert notification.body == "@bob can you look at this?"
    assert notification.url == f"/chat/team/#message-{message.pk}"
    # Published too: the mentioned user's bell lights up, after the commit.
    assert (user_key(team["bob"].pk), notification.pk) in [
        (key, event.get("id")) for key, event in events
    ]
    assert {key for key, _ in events} == {room_key(team["room"].pk), user_key(team["bob"].pk)}


def test_mention_skips_the_author_and_non_members(team):
    post(team["alice"], team["room"], "@alice @dave @nobody hello")
    assert not Notification.objects.exists()


def test_mentions_are_case_insensitive_and_end_at_punctuation(team):
    post(team["alice"], team["room"], "Thanks @Bob, and @carol. Mail me at alice@example.com")
    assert len(notified(team["bob"])) == 1
    assert len(notified(team["carol"])) == 1


def test_a_member_mentioned_twice_is_notified_once(team):
    post(team["alice"], team["room"], "@bob @bob @BOB")
    assert len(notified(team["bob"])) == 1


def test_inactive_members_are_not_notified(team):
    team["bob"].is_active = False
    team["bob"].save()
    post(team["alice"], team["room"], "@bob")
    assert not Notification.objects.exists()


def test_the_notification_quotes_an_excerpt(team):
    post(team["alice"], team["room"], "@bob " + "word " * 100)
    (notification,) = notified(team["bob"])
    assert len(notification.body) == services.MENTION_EXCERPT_LENGTH
    assert notification.body.endswith("…")


def test_a_rolled_back_post_notifies_nobody(capture_published, team):
    with capture_published() as events, pytest.raises(RuntimeError), transaction.atomic():
        post(team["alice"], team["room"], "@bob")
        raise RuntimeError("roll back")
    assert not Message.objects.exists()
    assert not Notification.objects.exists()
    assert events == []


# message_delete ----------------------------------------------------------------------------


def test_moderator_deletes_a_message_live(capture_published, make_room, user, moderator):
    room = make_room("ops", members=[user], moderators=[moderator])
    message = post(user, room, "oops, my password is hunter2")
    with capture_published() as events:
        assert services.message_delete(user=moderator, message=message) is True
        assert events == []
    stored = Message.objects.get()
    assert stored.deleted_at is not None
    assert (stored.body, stored.deleted_by) == ("", moderator)  # erased, not just hidden
    assert (message.body, message.is_deleted) == ("", True)
    assert events == [(room_key(room.pk), {"kind": "message.deleted", "id": message.pk})]


def test_staff_delete_in_any_room(capture_published, private_room, user, staff_user):
    message = post(user, private_room)
    with capture_published() as events:
        assert services.message_delete(user=staff_user, message=message)
    assert len(events) == 1


def test_deleting_twice_publishes_once(capture_published, private_room, user, staff_user):
    message = post(user, private_room)
    services.message_delete(user=staff_user, message=message)
    with capture_published() as events:
        assert services.message_delete(user=staff_user, message=message) is False
    assert events == []


@pytest.mark.parametrize("who", ["author", "member", "outsider"])
def test_only_moderators_delete(capture_published, make_room, user, other_user, make_user, who):
    room = make_room("ops", members=[user, other_user])
    message = post(user, room)
    deleter = {"author": user, "member": other_user, "outsider": make_user("eve")}[who]
    with capture_published() as events, pytest.raises(PermissionDenied):
        services.message_delete(user=deleter, message=message)
    assert Message.objects.get().body == "hello"
    assert events == []


# What crosses the channel layer ------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_every_event_crosses_the_real_channel_layer_unchanged(
    channel_layer, capture_published, make_room, user, other_user, staff_user
):
    """What the layer delivers (msgpack through Redis, or the in-memory copy) equals what
    ``capture_published`` recorded after a JSON round trip: every payload is plain JSON."""
    room = await sync_to_async(make_room)("ops", members=[user, other_user])
    channel = await channel_layer.new_channel()
    for group in (HUB_GROUP, room_key(room.pk), user_key(other_user.pk)):
        await channel_layer.group_add(group, channel)

    def write_everything():
        with capture_published() as events:
            message = post(user, room, "Ünïcode ✓ @bob\n<b>two</b> lines")
            services.message_delete(user=staff_user, message=message)
            services.membership_remove(room=room, user=other_user)
        return events

    captured = await sync_to_async(write_everything)()
    assert [event["kind"] for _, event in captured] == [
        "message",
        "created",
        "message.deleted",
        "member.removed",
    ]
    received: list[tuple[str, dict]] = []
    async with asyncio.timeout(10):
        while len(received) < len(captured):
            received.extend(expand_message(await channel_layer.receive(channel)))
    assert sorted(received, key=json.dumps) == sorted(captured, key=json.dumps)


@pytest.mark.django_db(transaction=True)
async def test_async_twins_write_and_publish_after_commit(
    capture_published, make_room, user, other_user
):
    room = await sync_to_async(make_room)("ops", members=[user])
    await sync_to_async(add_messages)(room, other_user, 2)
    with capture_published() as events:
        message, created = await services.amessage_post(
            user=user, room=room, client_id=uuid.uuid4(), body="from a socket"
        )
    assert created
    assert [event["message"]["id"] for _, event in events] == [message.pk]
    assert await services.amembership_mark_read(user=user, room=room, up_to=message.pk) is False


# Room deletion and typing -----------------------------------------------------------------


def test_room_delete_removes_everything_and_publishes_after_commit(
    make_room, user, capture_published
):
    room = make_room("doomed", members=[user])
    room_id = room.pk
    with capture_published() as events:
        services.room_delete(room=room)
    assert not Room.objects.filter(pk=room_id).exists()
    assert events == [(room_key(room_id), {"kind": "room.deleted"})]


async def test_typing_is_published_to_the_room_and_never_stored(
    transactional_db, user, channel_layer
):
    room = await sync_to_async(room_with)("typing")
    hub = Hub()
    try:
        async with hub.subscribe(room_key(room.pk), maxsize=10) as events:
            await services.atyping_announce(user=user, room=room)
            assert await events.wait(10)
            assert events.take() == [{"kind": "typing", "user": "alice", "user_id": user.pk}]
    finally:
        await hub.close()
    assert await sync_to_async(Message.objects.count)() == 0


async def test_typing_in_a_private_room_needs_membership(transactional_db, other_user):
    room = await sync_to_async(room_with)("hush", private=True)
    with pytest.raises(PermissionDenied):
        await services.atyping_announce(user=other_user, room=room)
