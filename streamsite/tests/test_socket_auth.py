"""WebSocket handshakes' sessions and users, read many at a time by Django's rules
(socket_auth.py)."""

import asyncio
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY
from django.contrib.sessions.models import Session
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from streamsite import socket_auth
from streamsite.socket_auth import SocketAuthMiddleware, session_and_user, sessions_and_users
from streamsite.testing.live_server import session_cookies

pytestmark = pytest.mark.django_db(transaction=True)


async def scope_seen(cookie: str | None) -> dict:
    """The scope the inner application gets for a handshake carrying ``cookie``."""
    seen = {}

    async def inner(scope, receive, send):
        seen.update(scope)

    headers = [(b"origin", b"http://127.0.0.1")]
    if cookie is not None:
        headers.append((b"cookie", cookie.encode("latin1")))
    await SocketAuthMiddleware(inner)({"type": "websocket", "headers": headers}, None, None)
    return seen


async def logged_in_cookie(user) -> tuple[str, str]:
    ((name, value),) = (await sync_to_async(session_cookies)(user)).items()
    return f"theme=dark; {name}={value}", value


async def test_a_logged_in_session_gives_its_user_and_session(user):
    cookie, key = await logged_in_cookie(user)
    scope = await scope_seen(cookie)
    assert scope["user"].pk == user.pk and scope["user"].is_authenticated
    assert scope["session"].session_key == key
    assert scope["cookies"] == {"theme": "dark", settings.SESSION_COOKIE_NAME: key}


async def test_handshakes_arriving_together_are_read_in_one_call_of_two_queries(
    make_user, monkeypatch
):
    """One thread hop and two queries (the sessions, the users), however many sockets."""
    users = [await sync_to_async(make_user)(f"joiner{n}") for n in range(6)]
    cookies = [(await logged_in_cookie(user))[0] for user in users]
    calls = []
    real = socket_auth.sessions_and_users

    def counted(keys):
        with CaptureQueriesContext(connection) as queries:
            result = real(keys)
        calls.append((len(keys), len(queries.captured_queries)))
        return result

    monkeypatch.setattr(socket_auth, "sessions_and_users", counted)
    scopes = await asyncio.gather(*(scope_seen(cookie) for cookie in cookies))
    assert [scope["user"].pk for scope in scopes] == [user.pk for user in users]
    assert calls == [(6, 2)]


async def test_no_cookie_is_anonymous_without_a_query(monkeypatch):
    def no_read(keys):
        raise AssertionError("no session cookie: nothing to read")

    monkeypatch.setattr(socket_auth, "sessions_and_users", no_read)
    for cookie in (None, "theme=dark", f"{settings.SESSION_COOKIE_NAME}="):
        scope = await scope_seen(cookie)
        assert not scope["user"].is_authenticated
        assert scope["session"].session_key is None


async def test_an_unknown_session_is_anonymous():
    scope = await scope_seen(f"{settings.SESSION_COOKIE_NAME}=nosuchsessionkey0123456789abcdef")
    assert not scope["user"].is_authenticated


async def test_an_inactive_user_is_anonymous(user):
    cookie, _ = await logged_in_cookie(user)
    user.is_active = False
    await user.asave(update_fields=["is_active"])
    scope = await scope_seen(cookie)
    assert not scope["user"].is_authenticated


async def test_a_session_from_before_a_password_change_is_anonymous(user):
    """The session's auth hash no longer matches: logged out, as a request would be."""
    cookie, _ = await logged_in_cookie(user)
    user.set_password("a new password, changed elsewhere")
    await user.asave(update_fields=["password"])
    scope = await scope_seen(cookie)
    assert not scope["user"].is_authenticated


# Held to Django's get_user, case by case ------------------------------------------------


def logged_in_twice(user) -> tuple[str, str]:
    """Two sessions of ``user`` alike: one read by get_user, one by the batch."""
    (one,) = session_cookies(user).values()
    (two,) = session_cookies(user).values()
    return one, two


def change_session(key: str, **changes) -> None:
    store = socket_auth.import_module(settings.SESSION_ENGINE).SessionStore(key)
    for name, value in changes.items():
        if value is None:
            store.pop(name, None)
        else:
            store[name] = value
    store.save()


def outcome(session, user) -> tuple:
    """What a caller sees: who, whether the session kept, lost or changed its key, and
    whether its old row is still stored."""
    return (
        user.pk if user.is_authenticated else None,
        "same" if session.session_key in session.original_key else session.session_key and "new",
        Session.objects.filter(session_key__in=session.original_key).exists(),
    )


def setup_valid(user):
    return logged_in_twice(user)


def setup_inactive(user):
    keys = logged_in_twice(user)
    user.is_active = False
    user.save(update_fields=["is_active"])
    return keys


def setup_password_changed(user):
    keys = logged_in_twice(user)
    user.set_password("changed elsewhere")
    user.save(update_fields=["password"])
    return keys


def setup_user_deleted(user):
    keys = logged_in_twice(user)
    user.delete()
    return keys


def setup_unknown_key(user):
    return "nosuchsessionkey0123456789abcdef", "nosuchsessionkey0123456789abcdeg"


def setup_too_short_key(user):
    return "short", "short"


def setup_expired(user):
    keys = logged_in_twice(user)
    Session.objects.filter(session_key__in=keys).update(
        expire_date=timezone.now() - timedelta(seconds=1)
    )
    return keys


def setup_backend_not_configured(user):
    keys = logged_in_twice(user)
    for key in keys:
        change_session(key, **{BACKEND_SESSION_KEY: "somewhere.else.Backend"})
    return keys


def setup_no_hash(user):
    keys = logged_in_twice(user)
    for key in keys:
        change_session(key, **{HASH_SESSION_KEY: None})
    return keys


def setup_anonymous_session(user):
    keys = []
    for _ in range(2):
        store = socket_auth.import_module(settings.SESSION_ENGINE).SessionStore()
        store["theme"] = "dark"
        store.create()
        keys.append(store.session_key)
    return tuple(keys)


CASES = [
    setup_valid,
    setup_inactive,
    setup_password_changed,
    setup_user_deleted,
    setup_unknown_key,
    setup_too_short_key,
    setup_expired,
    setup_backend_not_configured,
    setup_no_hash,
    setup_anonymous_session,
]


def read_both_ways(pairs):
    """Each pair's first key through Django's get_user, its second in one batch."""
    django_reads = [session_and_user(first) for first, _ in pairs]
    batch = sessions_and_users([second for _, second in pairs])
    for (first, second), (one, _), (two, _) in zip(pairs, django_reads, batch, strict=True):
        one.original_key, two.original_key = {first}, {second}
    return django_reads, batch


@pytest.mark.django_db
def test_a_batch_answers_as_get_user_does_case_by_case(make_user):
    pairs = [setup(make_user(f"case{n}")) for n, setup in enumerate(CASES)]
    django_reads, batch = read_both_ways(pairs)
    for setup, expected, got in zip(CASES, django_reads, batch, strict=True):
        assert outcome(*got) == outcome(*expected), setup.__name__
    assert outcome(*batch[0])[0] is not None  # the valid one is logged in


@pytest.mark.django_db
def test_a_session_made_with_a_fallback_secret_is_re_keyed_as_get_user_does(make_user):
    with override_settings(SECRET_KEY="the old secret key, rotated out of use now"):
        pair = logged_in_twice(make_user("rotated"))
    with override_settings(
        SECRET_KEY="the new secret key, rotated into use now",
        SECRET_KEY_FALLBACKS=["the old secret key, rotated out of use now"],
    ):
        ((expected,), (got,)) = read_both_ways([pair])
        assert outcome(*got) == outcome(*expected)
        assert outcome(*got)[1] == "new" and outcome(*got)[0] is not None


@pytest.mark.django_db
def test_a_session_signed_with_a_key_no_longer_known_is_anonymous_as_for_get_user(make_user):
    """Its data fails its signature: empty, as Django's ``decode`` makes it."""
    with override_settings(SECRET_KEY="a key that was dropped without a fallback"):
        pair = logged_in_twice(make_user("dropped"))
    ((expected,), (got,)) = read_both_ways([pair])
    assert outcome(*got) == outcome(*expected) == (None, "same", True)


@pytest.mark.django_db
def test_a_batch_of_one_session_engine_it_cannot_fill_reads_each_through_get_user(user):
    with override_settings(SESSION_ENGINE="django.contrib.sessions.backends.cache"):
        (key,) = session_cookies(user).values()
        ((session, got),) = sessions_and_users([key])
    assert got.pk == user.pk and session.session_key == key


@pytest.mark.django_db
@override_settings(
    AUTHENTICATION_BACKENDS=["django.contrib.auth.backends.AllowAllUsersModelBackend"]
)
def test_the_backend_s_own_rule_on_inactive_users_is_kept(make_user):
    user = make_user("inactive but allowed")
    pair = logged_in_twice(user)
    user.is_active = False
    user.save(update_fields=["is_active"])
    ((expected,), (got,)) = read_both_ways([pair])
    assert outcome(*got) == outcome(*expected) == (user.pk, "same", True)
