"""The chat socket on real servers: the wire, several processes, restarts, crashes."""

import asyncio
import os
import signal
import time

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus

from assistant.models import Answer
from bench.data import create_sessions
from chat.models import Message
from chat.tests.factories import add_messages, room_with
from streamsite.testing.chat import RemoteChatSocket
from streamsite.testing.live_server import session_cookies
from streamsite.testing.services import database_connection_count, skip_or_fail

pytestmark = pytest.mark.live_server


def uses_redis() -> bool:
    return not settings.CHANNEL_LAYERS["default"]["BACKEND"].endswith("InMemoryChannelLayer")


@pytest.fixture
async def open_socket():
    """``await open_socket(server, user, slug)``: a joined socket; all closed after the test."""
    sockets: list[RemoteChatSocket] = []

    async def open_one(server, user, slug: str = "lobby", *, joined=True) -> RemoteChatSocket:
        cookies = await sync_to_async(session_cookies)(user)
        socket = await RemoteChatSocket(f"{server.ws_url}/ws/chat/{slug}/", cookies).connect()
        sockets.append(socket)
        if joined:
            await socket.joined()
        return socket

    yield open_one
    for socket in sockets:
        await socket.disconnect()


def delta(frame: dict, joined=(), left=()) -> bool:
    """Whether ``frame`` is a presence delta holding these changes (and maybe others)."""
    return (
        frame.get("type") == "presence.delta"
        and set(joined) <= set(frame["joined"])
        and set(left) <= set(frame["left"])
    )


@pytest.fixture
def lobby_room(transactional_db):
    return room_with("lobby")


async def test_two_users_chat_on_a_real_server(
    live_server_asgi, open_socket, user, other_user, lobby_room
):
    alice = await open_socket(live_server_asgi, user)
    bob = await open_socket(live_server_asgi, other_user)
    await alice.send_message("hi bob")
    frame = await bob.until_type("message")
    assert frame["message"]["body"] == "hi bob"
    assert frame["message"]["author"]["username"] == "alice"
    await alice.until_type("ack")


async def test_compression_offered_as_chromium_does_is_declined(
    live_server_asgi, open_socket, user, other_user, lobby_room
):
    """Chromium offers permessage-deflate on every socket; both servers decline it, so a
    room's frame is built once and written as it is to every socket (FrameWriter under
    uvicorn): a long message with non-ASCII text still arrives whole."""
    alice = await open_socket(live_server_asgi, user)
    bob = await open_socket(live_server_asgi, other_user)
    for socket in (alice, bob):
        assert socket.connection.response.headers.get("Sec-WebSocket-Extensions") is None
    body = "é ünïcode ✓ " * 300  # 3,600 characters: a frame with the 16-bit length
    await alice.send_message(body)
    frame = await bob.until_type("message")
    assert frame["message"]["body"] == body.strip()


async def test_a_foreign_origin_is_refused_at_the_handshake(live_server_asgi, user, lobby_room):
    cookies = await sync_to_async(session_cookies)(user)
    cookie = "; ".join(f"{k}={v}" for k, v in cookies.items())
    with pytest.raises(InvalidStatus) as refused:
        await ws_connect(
            f"{live_server_asgi.ws_url}/ws/chat/lobby/",
            origin="http://evil.example",
            additional_headers={"Cookie": cookie},
        )
    assert refused.value.response.status_code == 403


async def test_anonymous_socket_gets_4401_on_a_real_server(live_server_asgi, lobby_room):
    socket = RemoteChatSocket(f"{live_server_asgi.ws_url}/ws/chat/lobby/")
    await socket.connect()
    try:
        assert await socket.closed() == 4401
    finally:
        await socket.disconnect()


async def test_two_processes_share_the_room_and_presence(
    live_server_factory, open_socket, user, other_user, lobby_room
):
    """Alice on process A and Bob on process B chat, and each sees the other online."""
    if not uses_redis():
        skip_or_fail("two processes need REDIS_URL")
    first, second = live_server_factory("uvicorn"), live_server_factory("daphne")
    alice = await open_socket(first, user)
    bob = await open_socket(second, other_user)
    await alice.until(lambda f: delta(f, joined=["bob"]))
    bob_presence = [f for f in bob.frames if f["type"] == "presence"][-1]
    assert (bob_presence["online"], bob_presence["count"]) == (["alice", "bob"], 2)
    await alice.send_message("from A")
    assert (await bob.until_type("message"))["message"]["body"] == "from A"
    await bob.send_message("from B")
    await alice.until(lambda f: f.get("type") == "message" and f["message"]["body"] == "from B")
    await bob.disconnect()
    await alice.until(lambda f: delta(f, left=["bob"]))


async def test_a_crashed_process_users_leave_presence_within_the_ttl(
    live_server_factory, open_socket, user, other_user, lobby_room
):
    """``disconnect`` never runs when a process dies: presence expires instead."""
    if not uses_redis():
        skip_or_fail("presence across processes needs REDIS_URL")
    ttl = "3"
    survivor = live_server_factory("uvicorn", CHAT_PRESENCE_TTL_SECONDS=ttl)
    doomed = live_server_factory("uvicorn", CHAT_PRESENCE_TTL_SECONDS=ttl)
    alice = await open_socket(survivor, user)
    await open_socket(doomed, other_user)
    await alice.until(lambda f: delta(f, joined=["bob"]))
    os.killpg(doomed.process.pid, signal.SIGKILL)
    started = asyncio.get_running_loop().time()
    await alice.until(lambda f: delta(f, left=["bob"]), 15)
    # Within the TTL plus one refresh period of the survivor.
    assert asyncio.get_running_loop().time() - started < 3 + 1 + 2


async def test_after_a_restart_the_client_resumes_and_misses_nothing(
    live_server_factory, open_socket, user, other_user, lobby_room
):
    server = live_server_factory("uvicorn")
    alice = await open_socket(server, user)
    await alice.send_message("before")
    last_seen = (await alice.until_type("ack"))["id"]
    server.stop()
    await alice.closed()
    # Written while the server is down (by another process, say): only the database has
    # them. More than the join's history holds, so the resume must bring the rest.
    missed = [m.pk for m in await sync_to_async(add_messages)(lobby_room, other_user, 80)]
    server.start()
    again = await open_socket(server, user, joined=False)
    _presence, history = await again.joined()
    await again.send({"type": "resume", "after": last_seen})
    await again.until(lambda f: f.get("type") == "message" and f["message"]["id"] == missed[-51])
    await again.ping()
    history_ids = [m["id"] for m in history["messages"]]
    resumed_ids = [m["id"] for m in again.messages()]
    assert history_ids == missed[-50:]
    assert resumed_ids == missed[:-50]  # the rest, once each, in order


async def test_idle_sockets_hold_few_database_connections(
    live_server_factory, make_user, lobby_room
):
    """200 open sockets on PostgreSQL: the server's connections stay few."""
    if connection.vendor != "postgresql":
        skip_or_fail("counting connections needs PostgreSQL (pg_stat_activity)")
    server = live_server_factory("uvicorn")
    users = await sync_to_async(lambda: [make_user(f"idle{n}") for n in range(200)])()
    connections_now = sync_to_async(database_connection_count)
    before = await connections_now()
    sockets = []
    try:
        for member in users:
            cookies = await sync_to_async(session_cookies)(member)
            socket = RemoteChatSocket(f"{server.ws_url}/ws/chat/lobby/", cookies)
            sockets.append(await socket.connect())
        await asyncio.gather(*(socket.joined() for socket in sockets))
        during = await connections_now()
    finally:
        for socket in sockets:
            await socket.disconnect()
    assert during - before <= 6, f"{during - before} connections for 200 idle sockets"


async def test_export_lists_what_the_socket_sent(live_server_asgi, open_socket, user, lobby_room):
    alice = await open_socket(live_server_asgi, user)
    await alice.send_message("exported")
    await alice.until_type("ack")
    cookies = await sync_to_async(session_cookies)(user)
    async with httpx.AsyncClient(base_url=live_server_asgi.url, cookies=cookies) as client:
        response = await client.get("/chat/lobby/export.ndjson")
    assert response.status_code == 200
    assert b'"exported"' in response.content
    assert await sync_to_async(Message.objects.count)() == 1


#: Sockets of distinct users in one room on one server process (the benchmark does 10,000).
CROWD = 2000


@pytest.mark.timeout(120)  # about 30 s on 2 busy cores: the pytest default is 60
async def test_a_crowd_joins_one_room_and_presence_stays_small(
    live_server_factory, password_hash, lobby_room
):
    """2,000 users join one room on one process: none is refused, every socket gets a
    message sent to the room, and each socket's presence traffic is the names that
    changed (each at most once), not the room over and over."""
    server = live_server_factory("uvicorn")

    def create_crowd() -> list[str]:
        model = get_user_model()
        users = model.objects.bulk_create(
            [model(username=f"crowd{n:05d}", password=password_hash) for n in range(CROWD)]
        )
        return create_sessions([member.pk for member in users])

    sessions = await sync_to_async(create_crowd)()
    url = f"{server.ws_url}/ws/chat/lobby/"
    sockets = [RemoteChatSocket(url, {settings.SESSION_COOKIE_NAME: key}) for key in sessions]
    handshakes = asyncio.Semaphore(64)

    async def join(socket: RemoteChatSocket) -> dict:
        async with handshakes:
            await socket.connect()
        snapshot, _history = await socket.joined()
        return snapshot

    started = time.monotonic()
    try:
        snapshots = await asyncio.gather(*(join(socket) for socket in sockets))
        joined_in = time.monotonic() - started
        assert all(len(snapshot["online"]) <= 100 for snapshot in snapshots)
        assert snapshots[-1]["count"] >= CROWD // 2  # they join concurrently
        # Everyone is in: the first socket's count reaches the crowd (coalesced deltas).
        await sockets[0].until(
            lambda f: f.get("type") == "presence.delta" and f["count"] == CROWD, 30
        )
        body = "to the whole crowd"
        await sockets[1].send_message(body)
        received = await asyncio.gather(
            *(socket.until(lambda f: f.get("type") == "message", 30) for socket in sockets)
        )
        assert {frame["message"]["body"] for frame in received} == {body}
        names = [
            sum(
                len(f["joined"]) + len(f["left"])
                for f in socket.frames
                if f["type"] == "presence.delta"
            )
            for socket in sockets
        ]
        frames = [sum(f["type"] == "presence.delta" for f in socket.frames) for socket in sockets]
        # Each of the others came online once: no socket is told a name twice.
        assert max(names) <= CROWD
        print(
            f"{CROWD} joins in {joined_in:.1f} s ({CROWD / joined_in:.0f}/s); presence per "
            f"socket: at most {max(frames)} delta frames, {max(names)} names "
            f"(mean {sum(names) / CROWD:.0f})"
        )
    finally:
        await asyncio.gather(*(socket.disconnect() for socket in sockets))


# The assistant in a room (servers of the session pointed at the fake upstream) -------------

WORDS = [f"word{n}é😀 " for n in range(20)]


@pytest.fixture
def assistant_room(transactional_db, user, other_user):
    return room_with("lobby", members=[user, other_user], assistant=True)


@pytest.fixture
def moderator_of_lobby(transactional_db, make_user, user):
    """A moderator of a room with the assistant where alice is a member."""
    moderator = make_user("mod")
    room_with("lobby", members=[user], moderators=[moderator], assistant=True)
    return moderator


@pytest.mark.parametrize("kind", ["daphne", "uvicorn"])
async def test_an_answer_streams_to_two_users_on_a_real_server(
    assistant_servers, fake_upstream, open_socket, user, other_user, assistant_room, kind
):
    server = assistant_servers(kind)
    await fake_upstream.ascript(tokens=WORDS, token_delay=0.01)
    alice = await open_socket(server, user)
    bob = await open_socket(server, other_user)
    _ack, answer_id = await alice.ask_assistant("@assistant tell me")
    for socket in (alice, bob):
        state = await socket.answer_done(answer_id)
        assert (state["status"], state["text"]) == ("complete", "".join(WORDS))
    # A socket that joins afterwards reads the whole answer in its history.
    late = await open_socket(server, other_user, joined=False)
    _presence, history = await late.joined()
    [shown] = [m for m in history["messages"] if m["id"] == answer_id]
    assert (shown["body"], shown["status"]) == ("".join(WORDS), "complete")


async def test_an_answer_generated_in_one_process_is_seen_and_stopped_from_another(
    assistant_servers, fake_upstream, open_socket, user, moderator_of_lobby
):
    if not uses_redis():
        skip_or_fail("two processes need REDIS_URL")
    first, second = assistant_servers("uvicorn"), assistant_servers("daphne")
    await fake_upstream.ascript(tokens=WORDS, stall_after=5, stall_seconds=None)
    alice = await open_socket(first, user)  # the answer is generated in alice's process
    mod = await open_socket(second, moderator_of_lobby)
    _ack, answer_id = await alice.ask_assistant("@assistant go on and on")
    shown = "".join(WORDS[:5])
    await mod.until(lambda f: f.get("type") == "message.delta" and f["position"] == len(shown))
    await mod.send({"type": "message.stop", "id": answer_id, "position": 3})
    for socket in (alice, mod):
        state = await socket.answer_done(answer_id)
        assert (state["status"], state["text"]) == ("stopped", shown[:3])
    await fake_upstream.await_disconnected(0, timeout=5)
    stored = await Answer.objects.aget(room_message_id=answer_id)
    assert (stored.status, stored.text) == ("stopped", shown[:3])


async def test_the_handshake_answers_with_a_request_id(
    live_server_asgi, open_socket, user, lobby_room
):
    """``X-Request-ID`` on the accept (streamsite.observability.logs), added by the
    consumer: the server's ``send`` stays unwrapped for the chat's direct frame writes."""
    alice = await open_socket(live_server_asgi, user)
    request_id = alice.connection.response.headers.get("X-Request-ID")
    if live_server_asgi.kind == "daphne":
        assert request_id is None  # daphne (runserver) drops an accept's headers
    else:
        assert request_id and len(request_id) <= 64
