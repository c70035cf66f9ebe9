"""A WebSocket handshake's session and user, read in one database call (socket_auth.py)."""

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext

from streamsite.socket_auth import SocketAuthMiddleware
from streamsite.streaming import db as db_module
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


async def test_both_reads_are_one_call_on_the_streams_pool(user, monkeypatch):
    """One thread hop, on ``db_call``'s pool (not the thread every socket shared)."""
    cookie, _ = await logged_in_cookie(user)
    calls = []
    real_db_call = db_module.db_call

    async def counting_db_call(function, *args, **kwargs):
        def counted(*args, **kwargs):
            with CaptureQueriesContext(connection) as queries:
                result = function(*args, **kwargs)
            calls.append((function.__name__, len(queries.captured_queries)))
            return result

        return await real_db_call(counted, *args, **kwargs)

    monkeypatch.setattr("streamsite.socket_auth.db_call", counting_db_call)
    scope = await scope_seen(cookie)
    assert scope["user"].pk == user.pk
    assert calls == [("session_and_user", 2)]  # the session row, the user row


async def test_no_cookie_is_anonymous_without_a_query(monkeypatch):
    async def no_db_call(*args, **kwargs):
        raise AssertionError("no session cookie: nothing to read")

    monkeypatch.setattr("streamsite.socket_auth.db_call", no_db_call)
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
