"""Fixtures of the chat tests (factories are in chat/tests/factories.py)."""

import pytest

from chat.tests.factories import room_with


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
