"""Who may do what in a room. Every check answers for one user and one room.

- Read: a public room, any active logged-in user; a private room, its members and staff.
- Post: a public room, any active logged-in user (posting makes them a member, see
  ``chat.services.message_post``); a private room, its members only (staff join first).
- Moderate (delete messages, add and remove members): the room's moderators and staff.
- Export: members and staff (the whole history at once is for those who belong).
- Stop the assistant's answer: who asked, the room's moderators and staff, while they can
  read the room.

Each check takes an optional ``membership`` (the user's ``Membership`` in the room, or
None) for callers that already have it; without it, the check looks it up only when the
answer depends on it. The ``a``-prefixed twins are for consumers: the lookup runs on the
shared pool and releases its connection (``streamsite.streaming.db.db_call``).
"""

from chat.models import Membership, Room
from streamsite.streaming.db import db_call

#: "Look the membership up if you need it."
UNKNOWN = object()


def is_active_user(user) -> bool:
    """A logged-in user whose account is active."""
    return user is not None and user.is_authenticated and user.is_active


def membership_of(user, room: Room) -> Membership | None:
    """The user's membership in the room, or None (also for anonymous users)."""
    if not is_active_user(user):
        return None
    return Membership.objects.filter(room_id=room.pk, user_id=user.pk).first()


async def amembership_of(user, room: Room) -> Membership | None:
    """``membership_of`` for consumers (see db_call)."""
    if not is_active_user(user):
        return None
    return await db_call(membership_of, user, room)


def _resolve(user, room: Room, membership) -> Membership | None:
    return membership_of(user, room) if membership is UNKNOWN else membership


def can_read(user, room: Room, membership=UNKNOWN) -> bool:
    """Whether the user may see the room and its messages."""
    if not is_active_user(user):
        return False
    if not room.is_private or user.is_staff:
        return True
    return _resolve(user, room, membership) is not None


async def acan_read(user, room: Room) -> bool:
    """``can_read`` for consumers; queries only for a private room and a non-staff user."""
    if is_active_user(user) and room.is_private and not user.is_staff:
        return can_read(user, room, await amembership_of(user, room))
    return can_read(user, room, None)


def can_post(user, room: Room, membership=UNKNOWN) -> bool:
    """Whether the user may send messages to the room."""
    if not is_active_user(user):
        return False
    if not room.is_private:
        return True
    return _resolve(user, room, membership) is not None


async def acan_post(user, room: Room) -> bool:
    """``can_post`` for consumers; queries only for a private room."""
    if is_active_user(user) and room.is_private:
        return can_post(user, room, await amembership_of(user, room))
    return can_post(user, room, None)


def can_moderate(user, room: Room, membership=UNKNOWN) -> bool:
    """Whether the user may delete messages and manage members in the room."""
    if not is_active_user(user):
        return False
    if user.is_staff:
        return True
    membership = _resolve(user, room, membership)
    return membership is not None and membership.is_moderator


async def acan_moderate(user, room: Room) -> bool:
    """``can_moderate`` for consumers; queries only for a non-staff user."""
    if is_active_user(user) and not user.is_staff:
        return can_moderate(user, room, await amembership_of(user, room))
    return can_moderate(user, room, None)


def can_export(user, room: Room, membership=UNKNOWN) -> bool:
    """Whether the user may download the room's whole history."""
    if not is_active_user(user):
        return False
    return user.is_staff or _resolve(user, room, membership) is not None


def can_stop_answer(user, room: Room, message, membership=UNKNOWN) -> bool:
    """Whether the user may stop the assistant's answer shown by ``message``."""
    if not is_active_user(user):
        return False
    if user.is_staff:
        return True
    membership = _resolve(user, room, membership)
    if not can_read(user, room, membership):
        return False
    return message.author_id == user.pk or (membership is not None and membership.is_moderator)
