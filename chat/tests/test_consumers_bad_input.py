"""Bad input on chat sockets of real servers: refused cleanly, nothing in the error log.

Issue #13's rows, one test each, on both servers (daphne as ``runserver`` runs it, and
uvicorn as ``manage.py serve`` runs it). Each reads what its server logged meanwhile:
a client's mistake is refused, never a traceback or an ERROR.
"""

import asyncio
import re

import pytest
from asgiref.sync import sync_to_async
from websockets.asyncio.client import connect as ws_connect

from chat.models import Message
from chat.tests.factories import room_with
from streamsite.testing.chat import RemoteChatSocket
from streamsite.testing.live_server import session_cookies

pytestmark = pytest.mark.live_server

#: Lines a server logs above INFO (daphne's and uvicorn's levels, and ours).
ALARMING = re.compile(r"Traceback|\bERROR\b|\bCRITICAL\b|Exception in ASGI|\bWARNING\b")
#: The close codes a frame over 64 KiB gets: RFC 6455's 1009, or daphne's stand-in for it
#: when the application (not daphne itself) closes (docs/protocol.md).
TOO_LARGE = {1009, 4009}


@pytest.fixture
def lobby_room(transactional_db):
    return room_with("lobby")


@pytest.fixture
async def open_socket():
    """``await open_socket(server, user)``: a joined socket; all closed after the test."""
    sockets: list[RemoteChatSocket] = []

    async def open_one(server, user, slug: str = "lobby") -> RemoteChatSocket:
        cookies = await sync_to_async(session_cookies)(user)
        socket = await RemoteChatSocket(f"{server.ws_url}/ws/chat/{slug}/", cookies).connect()
        sockets.append(socket)
        await socket.joined()
        return socket

    yield open_one
    for socket in sockets:
        await socket.disconnect()


async def settled_log(server, mark: int, open_socket, user) -> str:
    """What ``server`` logged since ``mark``, once a new socket's round trip has come back.

    The ping's answer means the server has handled what the test did before it.
    """
    witness = await open_socket(server, user)
    await witness.ping()
    await witness.disconnect()
    return server.log_since(mark)


def assert_clean(log: str) -> None:
    alarming = [line for line in log.splitlines() if ALARMING.search(line)]
    assert not alarming, f"the server logged:\n{log}"


async def test_lone_surrogate_in_a_message_body_is_refused_as_invalid(
    live_server_asgi, open_socket, user, lobby_room
):
    """Issue #13: '\\ud800' in a body (valid JSON) raised UnicodeEncodeError in the insert."""
    mark = live_server_asgi.log_mark()
    socket = await open_socket(live_server_asgi, user)
    client_id = await socket.send_message("hello \ud800 world")
    error = await socket.until_type("error")
    assert (error["code"], error["client_id"]) == ("invalid", client_id)
    await socket.ping()  # the socket stays open
    await socket.send_message("hello world")
    await socket.until_type("ack")
    bodies = await sync_to_async(lambda: list(Message.objects.values_list("body", flat=True)))()
    assert bodies == ["hello world"]
    assert_clean(await settled_log(live_server_asgi, mark, open_socket, user))


async def test_lone_surrogate_in_a_client_id_is_refused_without_echoing_it(
    live_server_asgi, open_socket, user, lobby_room
):
    """Issue #13: the client_id was echoed into the error frame, which could not be encoded
    ("Exception in ASGI application", socket dead)."""
    mark = live_server_asgi.log_mark()
    socket = await open_socket(live_server_asgi, user)
    await socket.send({"type": "message.send", "client_id": "\ud800", "body": "hi"})
    error = await socket.until_type("error")
    assert error["code"] == "invalid"
    assert "client_id" not in error
    # The same in presence.more's name, which would reach Redis and the reply.
    await socket.send({"type": "presence.more", "after": "a\udfff"})
    assert (await socket.until_type("error"))["code"] == "invalid"
    await socket.ping()
    assert_clean(await settled_log(live_server_asgi, mark, open_socket, user))


@pytest.mark.parametrize("kind", ["text", "binary"])
async def test_a_frame_over_64_kib_closes_with_1009_without_a_traceback(
    live_server_asgi, open_socket, user, lobby_room, kind
):
    """Issue #13: closed with 1011, and daphne refused 1009 ("invalid close code") with a
    traceback. Frames up to 64 KiB are read."""
    mark = live_server_asgi.log_mark()
    socket = await open_socket(live_server_asgi, user)
    await socket.send({"type": "ping", "padding": "x" * (60 * 1024)})
    await socket.until_type("pong")
    oversize = 64 * 1024 + 1
    await socket.send("x" * oversize if kind == "text" else b"x" * oversize)
    assert await socket.closed() in TOO_LARGE
    assert await sync_to_async(Message.objects.count)() == 0
    assert_clean(await settled_log(live_server_asgi, mark, open_socket, user))


async def test_runserver_closes_an_oversize_frame_with_4009_without_a_traceback(
    live_server_factory, open_socket, user, lobby_room
):
    """The development command itself: daphne cannot send 1009, so the chat closes with
    its stand-in, 4009 (docs/protocol.md). (Setting daphne's own message limit instead
    would drop the connection without a close frame: 1006.)"""
    server = live_server_factory("runserver")
    mark = server.log_mark()
    socket = await open_socket(server, user)
    await socket.send("x" * (64 * 1024 + 1))
    assert await socket.closed() == 4009
    assert_clean(await settled_log(server, mark, open_socket, user))


async def test_a_client_leaving_during_the_join_is_not_an_error(
    live_server_asgi, open_socket, user, lobby_room
):
    """Issue #13: 'ERROR chat.consumers: chat socket could not join room' with a traceback
    (ClientDisconnected) when the client left while its socket joined the room.

    Clients that drop the connection right after the handshake, before the join's frames:
    the server must treat it as the normal event it is.
    """
    mark = live_server_asgi.log_mark()
    cookies = await sync_to_async(session_cookies)(user)
    cookie = "; ".join(f"{k}={v}" for k, v in cookies.items())

    async def leave_at_once():
        connection = await ws_connect(
            f"{live_server_asgi.ws_url}/ws/chat/lobby/",
            origin=live_server_asgi.url,
            additional_headers={"Cookie": cookie},
        )
        connection.transport.abort()  # no close frame: the TCP connection just goes

    await asyncio.gather(*(leave_at_once() for _ in range(30)))
    assert_clean(await settled_log(live_server_asgi, mark, open_socket, user))


#: Frames a parser could choke on, each refused as ``invalid`` with the socket left open
#: (issue #13's fuzzing list: deep nesting, huge numbers, binary, fragments).
NASTY_FRAMES = {
    "deep nesting": "[" * 30_000 + "]" * 30_000,  # under the 64 KiB limit
    "a 5,000-digit number": '{"type": "history", "before": ' + "9" * 5000 + "}",
    "an infinite float": '{"type": "history", "before": 1e999}',
    "a huge limit": '{"type": "history", "limit": ' + "9" * 40 + "}",
    "a huge up_to": '{"type": "read", "up_to": -' + "9" * 40 + "}",
    "binary": b"\x00\xff\xfe" * 100,
    "fragments of junk": ['{"type": ', '"history", ', '"before": [[[['],
}


async def test_nasty_frames_are_refused_and_the_socket_stays_usable(
    live_server_asgi, open_socket, user, lobby_room
):
    """After each refusal the same socket answers a ping and still sends a message; a
    fragmented valid frame is handled like a whole one."""
    socket = await open_socket(live_server_asgi, user)
    mark = live_server_asgi.log_mark()
    for name, frame in NASTY_FRAMES.items():
        await socket.send(frame)
        error = await socket.until_type("error")
        assert error["code"] == "invalid", (name, error)
        await socket.ping()
        assert socket.close_code is None, name
    await socket.connection.send(['{"type": ', '"ping"}'])  # a valid frame in fragments
    await socket.until_type("pong")
    await socket.send_message("still here", None)
    assert_clean(await settled_log(live_server_asgi, mark, open_socket, user))
