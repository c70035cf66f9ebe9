"""The chat socket (chat.consumers), driven in-process through the real ASGI stack.

Each test connects through ``streamsite.asgi.application``: Origin check, session and
auth middleware, the router, the consumer, the hub on the project's channel layer (in
memory, or Redis when REDIS_URL is set), and the database (committed: the consumer reads
on its own threads).
"""

import asyncio
import uuid

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model

from chat import services
from chat.models import Membership, Message
from chat.presence import get_presence
from chat.tests.factories import add_messages
from notifications.models import Notification
from streamsite.testing.chat import LocalChatSocket
from streamsite.testing.live_server import session_cookies

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("channel_layer", "close_the_hub"),
]


async def db(function, *args, **kwargs):
    return await sync_to_async(function)(*args, **kwargs)


# Refusals ---------------------------------------------------------------------------------


async def test_anonymous_socket_is_closed_with_4401(connect, lobby):
    socket = await connect(None, "lobby", joined=False)
    assert socket.accepted
    assert await socket.closed() == 4401


async def test_inactive_user_is_closed_with_4401(connect, make_user, lobby):
    sleeper = await db(make_user, "sleeper", is_active=False)
    socket = await connect(sleeper, "lobby", joined=False)
    assert await socket.closed() == 4401


async def test_private_room_refuses_a_non_member_with_4403(connect, other_user, private_room):
    socket = await connect(other_user, "secret", joined=False)
    assert await socket.closed() == 4403


async def test_private_room_admits_members_and_staff(connect, user, staff_user, private_room):
    await connect(user, "secret")
    await connect(staff_user, "secret")


async def test_unknown_room_is_closed_with_4404(connect, user):
    socket = await connect(user, "nowhere", joined=False)
    assert await socket.closed() == 4404


# Joining ----------------------------------------------------------------------------------


async def test_join_sends_presence_then_the_latest_50_messages(connect, user, other_user, lobby):
    await db(add_messages, lobby, other_user, 60)
    socket = await connect(user, "lobby", joined=False)
    presence, history = await socket.joined()
    assert presence == {
        "type": "presence",
        "online": [user.username],
        "count": 1,
        "more": False,
        "version": presence["version"],
    }
    ids = [message["id"] for message in history["messages"]]
    assert len(ids) == 50 and ids == sorted(ids)
    latest = await db(lambda: list(Message.objects.order_by("-id").values_list("id", flat=True)))
    assert ids == sorted(latest[:50])
    assert history["has_more"] is True
    assert history["messages"][-1]["author"] == {"id": other_user.pk, "username": "bob"}


# Sending ----------------------------------------------------------------------------------


async def test_send_is_acked_after_commit_and_broadcast(connect, user, other_user, lobby):
    alice = await connect(user, "lobby")
    bob = await connect(other_user, "lobby")
    client_id = await alice.send_message("  hello bob  ")
    ack = await alice.until_type("ack")
    stored = await db(Message.objects.get, client_id=client_id)
    assert ack == {"type": "ack", "client_id": client_id, "id": stored.pk}
    assert stored.body == "hello bob"
    frame = await bob.until_type("message")
    assert frame["message"]["id"] == stored.pk
    assert frame["message"]["body"] == "hello bob"
    assert frame["message"]["client_id"] == client_id
    assert frame["message"]["room"] == "lobby"


async def test_resending_a_client_id_returns_the_same_ack_and_stores_nothing(
    connect, user, other_user, lobby
):
    alice = await connect(user, "lobby")
    bob = await connect(other_user, "lobby")
    client_id = await alice.send_message("once")
    first = await alice.until_type("ack")
    await alice.send_message("once, again", client_id)
    second = await alice.until_type("ack")
    assert second == first
    assert await db(Message.objects.filter(client_id=client_id).count) == 1
    await bob.ping()
    assert [m["body"] for m in bob.messages()] == ["once"]


@pytest.mark.parametrize(
    ("body", "code"), [("   ", "invalid"), ("x" * 4001, "too_long"), ("a\x00b", "invalid")]
)
async def test_a_refused_send_stores_nothing_and_keeps_the_socket(connect, user, lobby, body, code):
    socket = await connect(user, "lobby")
    client_id = await socket.send_message(body)
    error = await socket.until_type("error")
    assert error["code"] == code
    assert error["client_id"] == client_id
    assert await db(Message.objects.count) == 0
    await socket.ping()
    await socket.send_message("still here")
    await socket.until_type("ack")


async def test_message_length_follows_the_setting(connect, user, lobby, settings):
    settings.CHAT_MAX_MESSAGE_LENGTH = 5
    socket = await connect(user, "lobby")
    await socket.send_message("123456")
    assert (await socket.until_type("error"))["code"] == "too_long"


@pytest.mark.parametrize(
    "frame",
    [
        "not json",
        "[1, 2]",
        '"text"',
        "{}",
        '{"type": 1}',
        '{"type": "shout"}',
        '{"type": "message.send", "body": "hi"}',
        '{"type": "message.send", "client_id": "nope", "body": "hi"}',
        '{"type": "message.send", "client_id": "6f1c0a52-7a1f-4a57-9d5e-0a4f6d1e6b9f"}',
        '{"type": "message.send", "client_id": "6f1c0a52-7a1f-4a57-9d5e-0a4f6d1e6b9f", "body": 5}',
        '{"type": "history", "before": 10}',
        '{"type": "history", "before": 10, "limit": 0}',
        '{"type": "history", "before": 10, "limit": 101}',
        '{"type": "history", "before": true, "limit": 5}',
        '{"type": "history", "before": "10", "limit": 5}',
        '{"type": "resume"}',
        '{"type": "resume", "after": -1}',
        '{"type": "resume", "after": 1.5}',
        '{"type": "resume", "after": 99999999999999999999}',
        '{"type": "read", "up_to": null}',
    ],
)
async def test_a_malformed_frame_gets_invalid_and_the_socket_stays_open(
    connect, user, lobby, frame
):
    socket = await connect(user, "lobby")
    await socket.send(frame)
    error = await socket.until_type("error")
    assert error["code"] == "invalid"
    assert error["detail"]
    await socket.ping()


async def test_a_binary_frame_gets_invalid(connect, user, lobby):
    socket = await connect(user, "lobby")
    await socket.send(b'{"type": "ping"}')
    assert (await socket.until_type("error"))["code"] == "invalid"
    await socket.ping()


async def test_a_frame_over_64_kib_closes_the_socket_with_1009(connect, user, lobby):
    socket = await connect(user, "lobby")
    body = "é" * (33 * 1024)  # 33 K characters, 66 KiB of UTF-8
    await socket.send_message(body)
    assert await socket.closed() == 1009
    assert await db(Message.objects.count) == 0


async def test_a_frame_just_under_64_kib_is_parsed(connect, user, lobby):
    socket = await connect(user, "lobby")
    await socket.send({"type": "ping", "padding": "x" * (60 * 1024)})
    await socket.until_type("pong")


async def test_sends_over_the_rate_limit_are_refused_and_not_stored(connect, user, lobby, settings):
    settings.CHAT_RATE_LIMIT_MESSAGES = 3
    settings.CHAT_RATE_LIMIT_SECONDS = 60
    first = await connect(user, "lobby")
    second = await connect(user, "lobby")  # the limit is per user, not per socket
    for n in range(2):
        await first.send_message(f"m{n}")
        await first.until_type("ack")
    await second.send_message("m2")
    await second.until_type("ack")
    client_id = await second.send_message("one too many")
    error = await second.until_type("error")
    assert error["code"] == "rate_limited"
    assert error["client_id"] == client_id
    assert 0 < error["retry_after"] <= 60
    assert await db(Message.objects.count) == 3
    await first.send_message("also too many")
    assert (await first.until_type("error"))["code"] == "rate_limited"


# Permission on every action ---------------------------------------------------------------


async def test_removed_member_of_a_private_room_is_closed_at_once(
    connect, user, other_user, private_room
):
    await db(services.membership_add, room=private_room, user=other_user)
    alice = await connect(user, "secret")
    bob = await connect(other_user, "secret")
    await db(services.membership_remove, room=private_room, user=other_user)
    assert await bob.closed() == 4403
    await alice.send_message("after bob left")
    await alice.until_type("ack")
    assert bob.messages() == []


async def test_every_action_rechecks_permission(connect, user, private_room):
    socket = await connect(user, "secret")
    # Gone from the database without an event: only the per-action check can notice.
    await db(Membership.objects.filter(user=user).delete)
    await socket.send_message("hello?")
    assert (await socket.until_type("error"))["code"] == "forbidden"
    await socket.send({"type": "history", "before": 100, "limit": 10})
    assert (await socket.until_type("error"))["code"] == "forbidden"
    await socket.send({"type": "resume", "after": 0})
    assert (await socket.until_type("error"))["code"] == "forbidden"
    await socket.send({"type": "typing"})
    assert (await socket.until_type("error"))["code"] == "forbidden"
    await socket.send({"type": "presence.more", "after": "alice"})
    assert (await socket.until_type("error"))["code"] == "forbidden"
    assert await db(Message.objects.count) == 0


async def test_logging_out_closes_the_session_s_sockets_with_4401(connect, user, lobby):
    from notifications.services import notification_streams_end_for_session

    cookies = await sync_to_async(session_cookies)(user)
    socket = await LocalChatSocket("/ws/chat/lobby/", cookies).connect()
    try:
        await socket.joined()
        session_key = next(iter(cookies.values()))
        await db(notification_streams_end_for_session, user_id=user.pk, session_key=session_key)
        assert await socket.closed() == 4401
    finally:
        await socket.disconnect()


async def test_deleting_the_room_closes_its_sockets_with_4404(connect, user, lobby):
    socket = await connect(user, "lobby")
    await db(services.room_delete, room=lobby)
    assert await socket.closed() == 4404


# Typing, mentions, deletion ---------------------------------------------------------------


async def test_typing_reaches_others_throttled_and_is_not_stored(connect, user, other_user, lobby):
    alice = await connect(user, "lobby")
    bob = await connect(other_user, "lobby")
    for _ in range(5):
        await alice.send({"type": "typing"})
    await alice.send_message("done typing")
    await bob.until(lambda f: f.get("type") == "message")
    typing = [f for f in bob.frames if f["type"] == "typing"]
    assert typing == [{"type": "typing", "user": "alice"}]
    await alice.ping()
    assert not [f for f in alice.frames if f["type"] == "typing"]
    assert await db(Message.objects.count) == 1


async def test_a_mention_notifies_the_member(connect, user, other_user, lobby):
    await db(services.membership_add, room=lobby, user=other_user)
    alice = await connect(user, "lobby")
    await alice.send_message("hi @bob, look")
    await alice.until_type("ack")
    notification = await db(Notification.objects.get, recipient=other_user)
    assert "alice mentioned you" in notification.title


async def test_a_moderator_deletion_reaches_every_socket(
    connect, user, other_user, moderator, lobby
):
    await db(services.membership_add, room=lobby, user=moderator, role=Membership.Role.MODERATOR)
    alice = await connect(user, "lobby")
    bob = await connect(other_user, "lobby")
    await alice.send_message("regrettable")
    ack = await alice.until_type("ack")
    message = await db(Message.objects.select_related("room").get, pk=ack["id"])
    await db(services.message_delete, user=moderator, message=message)
    for socket in (alice, bob):
        assert await socket.until_type("message.deleted") == {
            "type": "message.deleted",
            "id": ack["id"],
        }


# History and resume -----------------------------------------------------------------------


async def test_history_pages_backwards(connect, user, other_user, lobby):
    messages = await db(add_messages, lobby, other_user, 30)
    ids = [m.pk for m in messages]
    socket = await connect(user, "lobby")
    await socket.send({"type": "history", "before": ids[20], "limit": 10})
    page = await socket.until_type("history")
    assert [m["id"] for m in page["messages"]] == ids[10:20]
    assert page["has_more"] is True
    await socket.send({"type": "history", "before": ids[5], "limit": 10})
    page = await socket.until_type("history")
    assert [m["id"] for m in page["messages"]] == ids[:5]
    assert page["has_more"] is False


async def test_history_shows_deleted_messages_without_their_text(connect, user, staff_user, lobby):
    message = await db(lambda: add_messages(lobby, user, 1)[0])
    message.room = lobby
    await db(services.message_delete, user=staff_user, message=message)
    socket = await connect(user, "lobby", joined=False)
    _presence, history = await socket.joined()
    assert history["messages"][0]["deleted"] is True
    assert history["messages"][0]["body"] == ""


async def test_resume_sends_every_later_message_in_order_then_live(
    connect, user, other_user, lobby
):
    messages = await db(add_messages, lobby, other_user, 1200)  # more than two pages
    socket = await connect(user, "lobby")
    await socket.send({"type": "resume", "after": messages[99].pk})
    bob = await connect(other_user, "lobby")
    await bob.send_message("live after resume")
    live = await bob.until_type("ack")
    await socket.until(lambda f: f.get("type") == "message" and f["message"]["id"] == live["id"])
    ids = [m["id"] for m in socket.messages()]
    # The join's history frame had the latest 50: a socket never frames a message twice.
    assert ids == [m.pk for m in messages[100:-50]] + [live["id"]]


async def test_resume_while_others_send_has_no_gap_and_no_duplicate(
    connect, user, other_user, lobby, settings
):
    settings.CHAT_RATE_LIMIT_MESSAGES = 100
    await db(add_messages, lobby, other_user, 2000)
    reader = await connect(user, "lobby")
    writer = await connect(other_user, "lobby")

    async def send_many():
        for n in range(30):
            await writer.send_message(f"during {n}")
            await writer.until(lambda f, n=n: f.get("type") == "ack")

    sending = asyncio.create_task(send_many())
    await reader.send({"type": "resume", "after": 0})
    await sending
    last = await db(lambda: Message.objects.order_by("-id").values_list("id", flat=True)[0])
    await reader.until(lambda f: f.get("type") == "message" and f["message"]["id"] == last)
    await reader.ping()
    ids = [m["id"] for m in reader.messages()]
    all_ids = await db(lambda: list(Message.objects.order_by("id").values_list("id", flat=True)))
    # The join's history (latest 50 at the time) is not repeated; everything else arrives
    # exactly once, in order.
    history_ids = {m["id"] for m in reader.frames[1]["messages"]}
    assert len(ids) == len(set(ids))
    assert sorted(ids) == ids
    assert set(ids) | history_ids == set(all_ids)


async def test_a_long_resume_does_not_hold_up_other_frames(connect, user, other_user, lobby):
    messages = await db(add_messages, lobby, other_user, 3000)
    socket = await connect(user, "lobby")
    await socket.send({"type": "resume", "after": 0})
    await socket.send({"type": "ping"})
    await socket.until_type("pong")
    resumed_before_pong = len(socket.messages())
    # The latest 50 came with the join's history: the resume ends just before them.
    last = messages[-51].pk
    await socket.until(lambda f: f.get("type") == "message" and f["message"]["id"] == last)
    assert resumed_before_pong < len(socket.messages()) == 2950


async def test_read_moves_the_read_position(connect, user, other_user, lobby):
    await db(services.membership_add, room=lobby, user=user)
    messages = await db(add_messages, lobby, other_user, 3)
    socket = await connect(user, "lobby")
    await socket.send({"type": "read", "up_to": messages[1].pk})
    await socket.ping()
    membership = await db(Membership.objects.get, user=user, room=lobby)
    assert membership.last_read_message_id == messages[1].pk


async def test_too_many_pending_reads_are_refused(connect, user, lobby):
    socket = await connect(user, "lobby")
    for _ in range(40):
        await socket.send({"type": "history", "before": 10**6, "limit": 1})
    await socket.ping()
    codes = {f.get("code") for f in socket.frames if f["type"] == "error"}
    assert codes <= {"rate_limited"}


# Presence ---------------------------------------------------------------------------------


async def test_presence_follows_sockets_across_tabs(connect, user, other_user, lobby):
    bob = await connect(other_user, "lobby")
    tab1 = await connect(user, "lobby")
    joined = await bob.until_type("presence.delta")
    assert (joined["joined"], joined["left"], joined["count"]) == (["alice"], [], 2)
    tab2 = await connect(user, "lobby")
    await tab2.disconnect()
    await get_presence().wait_until_published()
    await tab1.ping()
    await bob.ping()
    assert [f for f in bob.frames if f["type"] == "presence.delta"] == [joined]
    await tab1.disconnect()
    left = await bob.until_type("presence.delta")
    assert (left["joined"], left["left"], left["count"]) == ([], ["alice"], 1)
    assert left["version"] > joined["version"]


async def test_a_big_room_sends_a_capped_snapshot_then_only_the_changes(connect, user, lobby):
    """300 people join around a socket: it gets the first 100 names and the count, then
    frames holding only the names that changed, and pages for the rest on request."""
    room_id, presence = lobby.pk, get_presence()
    names = [f"user{n:03d}" for n in range(300)]
    await asyncio.gather(*(presence.join(room_id, 10**6 + n, names[n]) for n in range(120)))
    socket = await connect(user, "lobby", joined=False)
    snapshot, _history = await socket.joined()
    everyone = sorted([*names, "alice"])
    assert snapshot["online"] == everyone[:100]
    assert (snapshot["count"], snapshot["more"]) == (121, True)

    for n in range(120, 300):
        await presence.join(room_id, 10**6 + n, names[n])
    await presence.wait_until_published()
    await socket.ping()
    deltas = [f for f in socket.frames if f["type"] == "presence.delta"]
    assert deltas, "no presence.delta frame"
    assert all(not delta["left"] for delta in deltas)
    assert sorted(name for delta in deltas for name in delta["joined"]) == names[120:]
    assert deltas[-1]["count"] == 301
    assert all(delta["version"] > snapshot["version"] for delta in deltas)

    paged, after = list(snapshot["online"]), snapshot["online"][-1]
    while True:
        await socket.send({"type": "presence.more", "after": after})
        page = await socket.until_type("presence.page")
        assert page["after"] == after and len(page["online"]) <= 100
        paged += page["online"]
        if not page["more"]:
            break
        after = page["online"][-1]
    assert paged == everyone
    await asyncio.gather(*(presence.leave(room_id, 10**6 + n) for n in range(300)))


async def test_paging_after_a_name_that_is_not_a_string_is_invalid(connect, user, lobby):
    socket = await connect(user, "lobby")
    await socket.send({"type": "presence.more", "after": 5})
    assert (await socket.until_type("error"))["code"] == "invalid"


def test_user_model_has_usernames():
    # The presence list carries usernames; a custom user model must keep get_username().
    assert hasattr(get_user_model(), "get_username")


async def test_unknown_client_id_is_not_echoed_when_it_is_not_a_string(connect, user, lobby):
    socket = await connect(user, "lobby")
    await socket.send({"type": "message.send", "client_id": 5, "body": "x"})
    error = await socket.until_type("error")
    assert "client_id" not in error
    await socket.send_message("ok", str(uuid.uuid4()))
    await socket.until_type("ack")
