"""Fixtures of the chat tests (factories are in chat/tests/factories.py)."""

import pytest
from asgiref.sync import sync_to_async

from chat.presence import close_presence
from chat.tests.factories import room_with
from streamsite.streaming.hub import close_hub
from streamsite.streaming.redis import close_redis
from streamsite.testing.chat import LocalChatSocket
from streamsite.testing.live_server import session_cookies


@pytest.fixture
def make_room(db):
    """``make_room("ops", private=True, members=[...], moderators=[...])``."""
    return room_with


@pytest.fixture
def lobby(make_room):
    """A public room nobody has joined yet."""
    return make_room("lobby")


@pytest.fixture
def private_room(make_room, user):
    """A private room with ``user`` (alice) as its one member."""
    return make_room("secret", private=True, members=[user])


@pytest.fixture
def moderator(make_user):
    """A user who is not staff (room roles are given per room)."""
    return make_user("mod")


# Sockets in this process ------------------------------------------------------------


@pytest.fixture
async def close_the_hub():
    """The hub, presence tracker and Redis client belong to the test's event loop."""
    yield
    await close_presence()
    await close_hub()
    await close_redis()


@pytest.fixture
async def connect():
    """``await connect(user, slug)``: a socket on the room, logged in as ``user`` (or not).

    Every socket still open at the end is disconnected, so its consumer's cleanup runs
    inside the test.
    """
    sockets: list[LocalChatSocket] = []

    async def open_socket(user, slug: str, *, joined: bool = True) -> LocalChatSocket:
        cookies = await sync_to_async(session_cookies)(user) if user is not None else None
        socket = await LocalChatSocket(f"/ws/chat/{slug}/", cookies).connect()
        sockets.append(socket)
        if joined:
            await socket.joined()
        return socket

    yield open_socket
    for socket in sockets:
        await socket.disconnect()
