"""The session and user of a WebSocket handshake, read in one database call.

Channels' ``AuthMiddlewareStack`` reads the session, then the user, each with
``database_sync_to_async``: two thread hops, both on the one thread a server process's
thread-sensitive calls share, so every socket joining the process queued behind every
other's two queries (about 45 % of a 2,000-socket join was database work reached that
way: docs/benchmarks.md, "Where the chat targets stand"). Here both queries run in one
``db_call`` on the streams' pool (``streamsite.streaming.db``), several sockets at once,
and the connection goes back at once. A handshake without a session cookie costs none.

The rules are a request's: Django's own ``get_user`` checks the session's auth hash (with
``SECRET_KEY_FALLBACKS``) and the backend's ``user_can_authenticate`` (inactive users are
anonymous). Sockets never write the session, so nothing wraps ``send`` to save it
(Channels' session middleware does, for every frame).
"""

from importlib import import_module
from types import SimpleNamespace

from django.conf import settings
from django.contrib.auth import get_user
from django.contrib.auth.models import AnonymousUser
from django.http.cookie import parse_cookie

from streamsite.streaming.db import db_call


def session_and_user(session_key: str | None):
    """The session store for ``session_key`` and the user it is logged in as (or anonymous).

    Synchronous ORM work: run it through ``db_call``.
    """
    session = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    if not session_key:
        return session, AnonymousUser()
    # get_user reads only ``request.session``; it may flush or re-key a session whose auth
    # hash no longer matches, as for a request.
    return session, get_user(SimpleNamespace(session=session))


def handshake_cookies(scope) -> dict[str, str]:
    """The cookies of a WebSocket handshake (as ``request.COOKIES``)."""
    for name, value in scope.get("headers", ()):
        if name == b"cookie":
            return parse_cookie(value.decode("latin1"))
    return {}


class SocketAuthMiddleware:
    """Put ``cookies``, ``session`` and ``user`` in a WebSocket scope, as Channels'
    ``AuthMiddlewareStack`` does, with one database call (module docstring)."""

    def __init__(self, inner) -> None:
        self.inner = inner

    async def __call__(self, scope, receive, send):
        cookies = handshake_cookies(scope)
        session_key = cookies.get(settings.SESSION_COOKIE_NAME)
        if session_key:
            session, user = await db_call(session_and_user, session_key)
        else:
            session, user = session_and_user(None)
        scope = {**scope, "cookies": cookies, "session": session, "user": user}
        return await self.inner(scope, receive, send)
