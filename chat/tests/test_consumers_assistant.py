"""The assistant answering in a room, over the chat socket (chat.consumers, chat.outbox).

In-process sockets through the real ASGI stack, as in test_consumers; the answer is
generated in this test's event loop (as in a server process) from the fake upstream, a
real OpenAI-compatible server in its own process.
"""

import uuid

import pytest
from asgiref.sync import sync_to_async

from assistant.models import Answer, Conversation
from assistant.runner import close_runner
from chat.models import Membership, Message
from chat.tests.factories import add_messages, in_plain_thread, room_with

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("channel_layer", "close_upstream_clients"),
]

TOKENS = ["Hel", "lo", ", wor", "ld ", "é", "😀", " done."]
TEXT = "".join(TOKENS)


@pytest.fixture(autouse=True)
async def upstream(fake_upstream, settings, close_the_hub):
    """The assistant asks the fake upstream; generations end with the test."""
    settings.LLM_BASE_URL = fake_upstream.base_url
    settings.LLM_TIMEOUT_SECONDS = 5
    settings.ASSISTANT_FLUSH_MILLISECONDS = 10
    yield fake_upstream
    await close_runner()


@pytest.fixture
async def room(user, other_user, moderator):
    """A public room with the assistant: alice and bob are members, ``moderator`` moderates."""
    return await sync_to_async(room_with)(
        "lobby", members=[user, other_user], moderators=[moderator], assistant=True
    )


async def ask(socket, question: str = "@assistant say hello") -> tuple[dict, int]:
    return await socket.ask_assistant(question)


async def message_frame(socket, message_id: int) -> dict:
    return await socket.first(
        lambda f: f.get("type") == "message" and f["message"]["id"] == message_id
    )


async def stored(message_id: int) -> Answer:
    message = await Message.objects.aget(pk=message_id)
    return await Answer.objects.aget(pk=message.assistant_answer_id)


async def test_an_answer_streams_into_the_room_for_every_member_in_order(
    connect, upstream, room, user, other_user
):
    await upstream.ascript(tokens=TOKENS, token_delay=0.02)
    alice = await connect(user, "lobby")
    bob = await connect(other_user, "lobby")
    ack, answer_id = await ask(alice)
    assert answer_id > ack["id"]
    for socket in (alice, bob):
        state = await socket.answer_done(answer_id)
        assert state == {"text": TEXT, "status": "complete", "position": len(TEXT), "error": None}
        kinds = [
            frame["type"]
            for frame in socket.frames
            if frame.get("id") == answer_id or frame.get("message", {}).get("id") == answer_id
        ]
        assert kinds[0] == "message" and kinds[-1] == "message.done"
        assert set(kinds[1:-1]) == {"message.delta"}
        [shown] = [m for m in socket.messages() if m["id"] == answer_id]
        assert (shown["status"], shown["body"], shown["position"]) == ("streaming", "", 0)
        assert shown["author"]["username"] == "alice"
    answer = await stored(answer_id)
    assert (answer.status, answer.text) == ("complete", TEXT)
    [request] = await upstream.arequests()
    assert request["body"]["messages"][-1] == {"role": "user", "content": "@assistant say hello"}


async def test_joining_mid_answer_shows_the_text_so_far_then_continues_without_gap_or_dup(
    connect, upstream, room, user, other_user
):
    await upstream.ascript(tokens=TOKENS, stall_after=3, stall_seconds=1.5)
    alice = await connect(user, "lobby")
    _ack, answer_id = await ask(alice)
    so_far = "".join(TOKENS[:3])
    await alice.until(lambda f: f.get("type") == "message.delta" and f["position"] == len(so_far))
    bob = await connect(other_user, "lobby", joined=False)
    _presence, history = await bob.joined()
    [shown] = [m for m in history["messages"] if m["id"] == answer_id]
    assert (shown["assistant"], shown["status"]) == (True, "streaming")
    assert (shown["body"], shown["position"]) == (so_far, len(so_far))
    # bob.answer() checks that each later delta starts exactly where bob is.
    assert (await bob.answer_done(answer_id))["text"] == TEXT
    assert (await alice.answer_done(answer_id))["text"] == TEXT


async def test_resume_carries_a_streaming_answer_s_text_and_position(
    connect, upstream, room, user, other_user
):
    await upstream.ascript(tokens=TOKENS, stall_after=3, stall_seconds=1.5)
    alice = await connect(user, "lobby")
    ack, answer_id = await ask(alice)
    await alice.until(lambda f: f.get("type") == "message.delta")
    # 60 messages after it: the answer is not in a new socket's first history page.
    await in_plain_thread(add_messages, room, other_user, 60)
    bob = await connect(other_user, "lobby", joined=False)
    _presence, history = await bob.joined()
    assert answer_id not in [m["id"] for m in history["messages"]]
    await bob.send({"type": "resume", "after": ack["id"]})
    resumed = await message_frame(bob, answer_id)
    assert resumed["message"]["status"] == "streaming"
    assert resumed["message"]["body"] == TEXT[: resumed["message"]["position"]]
    assert resumed["message"]["position"] > 0
    assert (await bob.answer_done(answer_id))["text"] == TEXT


async def test_who_asked_and_moderators_may_stop_others_may_not(
    connect, upstream, room, user, other_user, moderator
):
    await upstream.ascripts([{"tokens": TOKENS, "stall_after": 3, "stall_seconds": None}] * 2)
    alice = await connect(user, "lobby")
    bob = await connect(other_user, "lobby")
    mod = await connect(moderator, "lobby")
    _ack, first = await ask(alice)
    await bob.until(lambda f: f.get("type") == "message.delta")
    await bob.send({"type": "message.stop", "id": first, "position": 1})
    assert (await bob.until_type("error"))["code"] == "forbidden"
    await bob.send({"type": "message.stop", "id": 10**9})
    assert (await bob.until_type("error"))["code"] == "not_found"
    plain = await alice.send_message("not a question")
    plain_ack = await alice.until(lambda f: f.get("type") == "ack" and f["client_id"] == plain)
    await alice.send({"type": "message.stop", "id": plain_ack["id"]})
    assert (await alice.until_type("error"))["code"] == "not_found"
    await alice.send({"type": "message.stop", "id": first, "position": -1})
    assert (await alice.until_type("error"))["code"] == "invalid"

    await alice.send({"type": "message.stop", "id": first, "position": 4})
    for socket in (alice, bob, mod):
        state = await socket.answer_done(first)
        assert (state["status"], state["text"], state["position"]) == ("stopped", "Hell", 4)
    await upstream.await_disconnected(0, timeout=5)  # the upstream request was closed

    _ack, second = await ask(bob, "@assistant and you?")
    # Every token before the stall stored (flushes may carry them one by one).
    shown = len("".join(TOKENS[:3]))
    await mod.until(
        lambda f: f.get("type") == "message.delta" and f["id"] == second and f["position"] == shown
    )
    await mod.send({"type": "message.stop", "id": second})  # no position: all it has
    state = await bob.answer_done(second)
    assert (state["status"], state["text"]) == ("stopped", "".join(TOKENS[:3]))
    assert (await stored(second)).text == "".join(TOKENS[:3])


async def test_a_refused_question_is_kept_and_the_asker_told_why(
    connect, upstream, room, user, other_user, settings
):
    settings.ASSISTANT_MAX_CONCURRENT = 1
    await upstream.ascript(tokens=TOKENS, stall_after=1, stall_seconds=None)
    alice = await connect(user, "lobby")
    bob = await connect(other_user, "lobby")
    await ask(alice, "@assistant first")
    client_id = await alice.send_message("@assistant second")
    ack = await alice.until(lambda f: f.get("type") == "ack" and f["client_id"] == client_id)
    error = await alice.next()
    assert error["type"] == "error" and error["code"] == "assistant_unavailable"
    assert (error["client_id"], error["id"]) == (client_id, ack["id"])
    assert "still answering" in error["detail"]
    second = await message_frame(bob, ack["id"])
    assert second["message"]["body"] == "@assistant second"
    await bob.ping()
    assert [m["id"] for m in bob.messages() if m.get("assistant")] == [ack["id"] - 1]


async def test_a_non_member_never_sees_a_private_room_s_answer(
    connect, upstream, user, other_user, async_client
):
    secret = await sync_to_async(room_with)("secret", private=True, members=[user], assistant=True)
    await sync_to_async(room_with)("lobby", members=[other_user])
    await upstream.ascript(tokens=TOKENS, token_delay=0.02)
    alice = await connect(user, "secret")
    bob_elsewhere = await connect(other_user, "lobby")
    refused = await connect(other_user, "secret", joined=False)
    assert await refused.closed() == 4403
    _ack, answer_id = await ask(alice, "@assistant the secret plan?")
    assert (await alice.answer_done(answer_id))["text"] == TEXT
    await bob_elsewhere.ping()
    assert [f["type"] for f in bob_elsewhere.frames] == ["presence", "history", "pong"]
    # Nor through the assistant's pages: the room's conversation belongs to nobody.
    conversation = await Conversation.objects.aget(room_id=secret.pk)
    for who in (other_user, user):
        await async_client.aforce_login(who)
        response = await async_client.get(f"/assistant/{conversation.pk}/stream")
        assert response.status_code == 404
    assert await Membership.objects.filter(room=secret, user=other_user).acount() == 0


async def test_a_room_without_the_assistant_answers_nothing(connect, upstream, user):
    await sync_to_async(room_with)("quiet", members=[user])
    alice = await connect(user, "quiet")
    client_id = await alice.send_message("@assistant hello?")
    await alice.until(lambda f: f.get("type") == "ack" and f["client_id"] == client_id)
    await alice.ping()
    assert not [m for m in alice.messages() if m.get("assistant")]
    assert await upstream.arequests() == []
    assert str(uuid.UUID(client_id)) == client_id
