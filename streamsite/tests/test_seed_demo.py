"""``seed_demo`` creates the demo logins, idempotently, and only for development."""

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.management import CommandError, call_command


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
    before = list(get_user_model().objects.values_list("pk", "username", "is_staff"))
    output = seed()
    assert list(get_user_model().objects.values_list("pk", "username", "is_staff")) == before
    assert "exists" in output


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
    seed(force=True)
    assert get_user_model().objects.count() == 3
