"""Who may read, post, moderate and export, in public and private rooms."""

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import AnonymousUser
from django.db import connection
from django.test.utils import CaptureQueriesContext

from chat import permissions
from chat.models import Membership

pytestmark = pytest.mark.django_db

CHECKS = ("can_read", "can_post", "can_moderate", "can_export")


def answers(user, room) -> dict[str, bool]:
    return {check: getattr(permissions, check)(user, room) for check in CHECKS}


@pytest.fixture
def inactive(make_user):
    return make_user("gone", is_active=False)


def test_public_room(lobby, user, other_user, staff_user, moderator, inactive):
    Membership.objects.create(room=lobby, user=other_user)
    Membership.objects.create(room=lobby, user=moderator, role="moderator")
    everyone = {"can_read": True, "can_post": True}
    assert answers(user, lobby) == {**everyone, "can_moderate": False, "can_export": False}
    assert answers(other_user, lobby) == {**everyone, "can_moderate": False, "can_export": True}
    assert answers(moderator, lobby) == {**everyone, "can_moderate": True, "can_export": True}
    assert answers(staff_user, lobby) == {**everyone, "can_moderate": True, "can_export": True}
    nothing = dict.fromkeys(CHECKS, False)
    assert answers(AnonymousUser(), lobby) == nothing
    assert answers(inactive, lobby) == nothing


def test_private_room(private_room, user, other_user, staff_user, moderator, inactive):
    Membership.objects.create(room=private_room, user=moderator, role="moderator")
    Membership.objects.create(room=private_room, user=inactive)
    assert answers(user, private_room) == {
        "can_read": True, "can_post": True, "can_moderate": False, "can_export": True,
    }  # fmt: skip
    assert answers(moderator, private_room) == dict.fromkeys(CHECKS, True)
    nothing = dict.fromkeys(CHECKS, False)
    assert answers(other_user, private_room) == nothing
    assert answers(AnonymousUser(), private_room) == nothing
    assert answers(inactive, private_room) == nothing  # even as a member
    # Staff read and moderate every room, but join a private room to post in it.
    assert answers(staff_user, private_room) == {
        "can_read": True, "can_post": False, "can_moderate": True, "can_export": True,
    }  # fmt: skip


def test_a_known_membership_saves_the_query(private_room, user):
    membership = permissions.membership_of(user, private_room)
    with CaptureQueriesContext(connection) as queries:
        assert permissions.can_read(user, private_room, membership)
        assert permissions.can_post(user, private_room, membership)
        assert not permissions.can_moderate(user, private_room, membership)
        assert not permissions.can_read(user, private_room, None)  # "not a member"
    assert queries.captured_queries == []


@pytest.mark.django_db(transaction=True)
async def test_async_twins_agree(make_room, make_user):
    def setup():
        alice, bob = make_user("alice"), make_user("bob")
        room = make_room("secret", private=True, moderators=[alice])
        return alice, bob, room, make_room("open")

    alice, bob, private_room, public_room = await sync_to_async(setup)()
    for user in (alice, bob, AnonymousUser()):
        for room in (private_room, public_room):
            expected = await sync_to_async(answers)(user, room)
            assert {
                "can_read": await permissions.acan_read(user, room),
                "can_post": await permissions.acan_post(user, room),
                "can_moderate": await permissions.acan_moderate(user, room),
            } == {k: v for k, v in expected.items() if k != "can_export"}
