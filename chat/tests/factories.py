"""Factories of the chat tests: rooms with members, and messages."""

import asyncio
import uuid

from django.db import connection

from chat import services
from chat.models import Membership, Message, Room


def room_with(
    slug: str, *, private: bool = False, members=(), moderators=(), assistant: bool = False
) -> Room:
    """A room whose memberships are exactly these (straight through the ORM).

    What the services do when a room is created is tested in test_services.
    """
    room = Room.objects.create(
        slug=slug, name=slug.title(), is_private=private, assistant_enabled=assistant
    )
    for user in members:
        Membership.objects.create(room=room, user=user)
    for user in moderators:
        Membership.objects.create(room=room, user=user, role=Membership.Role.MODERATOR)
    return room


def post(user, room, body: str = "hello", client_id=None) -> Message:
    """Post through the service (so a first post in a public room joins it)."""
    message, _created = services.message_post(
        user=user, room=room, client_id=client_id or uuid.uuid4(), body=body
    )
    return message


def add_messages(room, author, count: int, **fields) -> list[Message]:
    """Many messages at once, bypassing the service (no events, no memberships)."""
    return Message.objects.bulk_create(
        Message(room=room, author=author, client_id=uuid.uuid4(), **{"body": f"m{n}", **fields})
        for n in range(count)
    )


async def in_plain_thread(function, /, *args, **kwargs):
    """Run ORM code (a setup) in a thread of its own, from an async test.

    Not asgiref's threads: an assistant's answer started there finds no server loop, so no
    generation runs on the test's loop when it is not what the test is about.
    """

    def call():
        try:
            return function(*args, **kwargs)
        finally:
            connection.close()

    return await asyncio.to_thread(call)
