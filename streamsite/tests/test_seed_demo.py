"""``seed_demo`` creates the demo logins and chat rooms, idempotently, only for development."""

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.management import CommandError, call_command

from chat.models import Membership, Room


def seed(**options) -> str:
    from io import StringIO

    out = StringIO()
    call_command("seed_demo", stdout=out, **options)
    return out.getvalue()


@pytest.fixture
def debug_on(settings):
    settings.DEBUG = True


def test_creates_admin_and_two_users_and_prints_logins(db, debug_on, settings):
    settings.DEMO_PASSWORD = "demo-pass-123"
    output = seed()
    users = get_user_model().objects.order_by("username")
    assert [(u.username, u.is_staff, u.is_superuser) for u in users] == [
        ("admin", True, True),
        ("alice", False, False),
        ("bob", False, False),
    ]
    for username in ("admin", "alice", "bob"):
        assert f"{username}" in output
        assert authenticate(username=username, password="demo-pass-123") is not None
    assert "demo-pass-123" in output


def test_is_idempotent(db, debug_on):
    seed()
    users = get_user_model().objects.order_by("pk")
    before = list(users.values_list("pk", "username", "is_staff"))
    output = seed()
    assert list(users.values_list("pk", "username", "is_staff")) == before
    assert "exists" in output


def rooms_and_members() -> dict[str, tuple[bool, dict[str, str]]]:
    return {
        room.slug: (
            room.is_private,
            dict(room.memberships.values_list("user__username", "role")),
        )
        for room in Room.objects.all()
    }


def test_creates_a_public_lobby_and_a_private_staff_room(db, debug_on):
    output = seed()
    assert rooms_and_members() == {
        "lobby": (False, {"admin": "moderator"}),
        "staff": (True, {"admin": "moderator", "alice": "member"}),
    }
    assert "/chat/lobby/" in output and "/chat/staff/" in output


def test_rooms_are_seeded_once_and_their_demo_members_restored(db, debug_on):
    seed()
    rooms = list(Room.objects.values_list("pk", "slug"))
    Membership.objects.filter(room__slug="staff", user__username="alice").delete()
    output = seed()
    assert list(Room.objects.values_list("pk", "slug")) == rooms
    assert rooms_and_members()["staff"] == (True, {"admin": "moderator", "alice": "member"})
    assert "(exists)" in output


def test_resets_a_changed_password(db, debug_on, settings):
    seed()
    alice = get_user_model().objects.get(username="alice")
    alice.set_password("something-else-entirely")
    alice.save()
    seed()
    assert authenticate(username="alice", password=settings.DEMO_PASSWORD) is not None


def test_refuses_without_debug_unless_forced(db, settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="DEBUG is off"):
        seed()
    assert not get_user_model().objects.exists()
    assert not Room.objects.exists()
    seed(force=True)
    assert get_user_model().objects.count() == 3
    assert Room.objects.count() == 2
