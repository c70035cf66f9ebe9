"""The sessions and users of WebSocket handshakes, read many at a time.

Channels' ``AuthMiddlewareStack`` reads the session, then the user, each with
``database_sync_to_async``: two thread hops, both on the one thread a server process's
thread-sensitive calls share, so every socket joining the process queued behind every
other's two queries (about 45 % of a 2,000-socket join was database work reached that
way: docs/benchmarks.md, "Where the chat targets stand"). Here the handshakes that wait
for a database thread at the same moment are read together (``batched_reads``): one
``db_call`` on the streams' pool, one query for all their sessions and one for all their
users, however many sockets arrive. A handshake without a session cookie costs none.

The rules are a request's, those of Django's ``get_user``: the session's auth hash is
checked (with ``SECRET_KEY_FALLBACKS``: a hash made with an old key re-keys the session,
as ``get_user`` does; one that matches no key, after a password change, flushes it), and
the backend's ``user_can_authenticate`` (inactive users are anonymous).
``users_of_sessions`` applies them to users loaded together;
``streamsite/tests/test_socket_auth.py`` holds it to ``get_user``'s answers case by
case. A session engine other than the database's, or an authentication backend whose
``get_user`` is its own, is read one session at a time
through ``get_user`` itself (still one thread hop for the batch). Sockets never write the
session, so nothing wraps ``send`` to save it (Channels' session middleware does, for
every frame).
"""

from collections.abc import Sequence
from importlib import import_module
from types import SimpleNamespace

from django.conf import settings
from django.contrib.auth import (
    BACKEND_SESSION_KEY,
    HASH_SESSION_KEY,
    SESSION_KEY,
    get_user,
    get_user_model,
    load_backend,
)
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import AnonymousUser
from django.contrib.sessions.backends.db import SessionStore as DatabaseSessionStore
from django.http.cookie import parse_cookie
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from streamsite.streaming.batched_reads import batched_reads


def session_and_user(session_key: str | None):
    """The session store for ``session_key`` and the user it is logged in as (or anonymous),
    through Django's own ``get_user``. Synchronous ORM work: run it through ``db_call``."""
    session = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    if not session_key:
        return session, AnonymousUser()
    # get_user reads only ``request.session``; it may flush or re-key a session whose auth
    # hash no longer matches, as for a request.
    return session, get_user(SimpleNamespace(session=session))


def sessions_and_users(session_keys: Sequence[str]) -> list:
    """``session_and_user`` for many keys: one query for the sessions, one for the users.

    Synchronous ORM work, for ``batched_reads`` (one ``db_call``). A key whose session or
    user cannot be read gets its exception as its result, not the others'.
    """
    stores = [import_module(settings.SESSION_ENGINE).SessionStore(key) for key in session_keys]
    if not all(_loads_from_database(store) for store in stores):
        return [_outcome(session_and_user, key) for key in session_keys]
    _load_sessions(stores)
    return users_of_sessions(stores)


def _outcome(function, *args):
    try:
        return function(*args)
    except Exception as error:
        return error


def _loads_from_database(store) -> bool:
    """Whether ``store`` reads its data as Django's database engine does (so it can be
    filled from a row read with others')."""
    kind = type(store)
    return (
        isinstance(store, DatabaseSessionStore)
        and kind.load is DatabaseSessionStore.load
        and kind._get_session_from_db is DatabaseSessionStore._get_session_from_db
    )


def _load_sessions(stores) -> None:
    """Fill each store as its ``load()`` would, from one query.

    ``_get_session_from_db`` reads the row unexpired; a key without one becomes ``None``
    and its data empty. Keys that fail validation are ``None`` already (never queried).
    """
    keys = {store.session_key for store in stores if store.session_key is not None}
    model = DatabaseSessionStore.get_model_class()
    rows = dict(
        model.objects.filter(session_key__in=keys, expire_date__gt=timezone.now()).values_list(
            "session_key", "session_data"
        )
    )
    for store in stores:
        data = rows.get(store.session_key) if store.session_key is not None else None
        if data is None:
            store._session_key = None
            store._session_cache = {}
        else:
            store._session_cache = store.decode(data)


def users_of_sessions(sessions) -> list:
    """``(session, user)`` for each loaded session, by ``get_user``'s rules, the users of
    model-backend sessions read in one query."""
    user_model = get_user_model()
    claims = [_claim(session, user_model) for session in sessions]
    batched_ids = {claim[0] for claim in claims if claim and _uses_model_backend(claim[1])}
    users = user_model._default_manager.in_bulk(batched_ids) if batched_ids else {}
    results = []
    for session, claim in zip(sessions, claims, strict=True):
        try:
            results.append((session, _verified_user(session, claim, users)))
        except Exception as error:
            results.append(error)
    return results


def _claim(session, user_model):
    """``(user id, backend)`` the session says it is logged in as, or None (anonymous)."""
    try:
        user_id = user_model._meta.pk.to_python(session[SESSION_KEY])
        backend_path = session[BACKEND_SESSION_KEY]
    except KeyError:
        return None
    except Exception:  # a malformed id: get_user raises it, to this key's caller alone
        return (None, None)
    if backend_path not in settings.AUTHENTICATION_BACKENDS:
        return None
    return user_id, load_backend(backend_path)


def _uses_model_backend(backend) -> bool:
    return isinstance(backend, ModelBackend) and type(backend).get_user is ModelBackend.get_user


def _verified_user(session, claim, users):
    """The rest of ``django.contrib.auth.get_user``, for a user loaded with others."""
    if claim is None:
        return AnonymousUser()
    user_id, backend = claim
    if backend is None:
        return get_user(SimpleNamespace(session=session))  # raises as get_user does
    if _uses_model_backend(backend):
        user = users.get(user_id)
        if user is not None and not backend.user_can_authenticate(user):
            user = None
    else:
        user = backend.get_user(user_id)
    if hasattr(user, "get_session_auth_hash"):
        session_hash = session.get(HASH_SESSION_KEY)
        if not session_hash:
            session_hash_verified = False
        else:
            session_auth_hash = user.get_session_auth_hash()
            session_hash_verified = constant_time_compare(session_hash, session_auth_hash)
        if not session_hash_verified:
            # A hash made with a fallback secret: re-key the session, as get_user does.
            if session_hash and any(
                constant_time_compare(session_hash, fallback_auth_hash)
                for fallback_auth_hash in user.get_session_auth_fallback_hash()
            ):
                session.cycle_key()
                session[HASH_SESSION_KEY] = session_auth_hash
            else:
                session.flush()
                user = None
    return user or AnonymousUser()


def handshake_cookies(scope) -> dict[str, str]:
    """The cookies of a WebSocket handshake (as ``request.COOKIES``)."""
    for name, value in scope.get("headers", ()):
        if name == b"cookie":
            return parse_cookie(value.decode("latin1"))
    return {}


class SocketAuthMiddleware:
    """Put ``cookies``, ``session`` and ``user`` in a WebSocket scope, as Channels'
    ``AuthMiddlewareStack`` does, reading handshakes together (module docstring)."""

    def __init__(self, inner) -> None:
        self.inner = inner

    async def __call__(self, scope, receive, send):
        cookies = handshake_cookies(scope)
        session_key = cookies.get(settings.SESSION_COOKIE_NAME)
        if session_key:
            session, user = await batched_reads().read(sessions_and_users, session_key)
        else:
            session, user = session_and_user(None)
        scope = {**scope, "cookies": cookies, "session": session, "user": user}
        return await self.inner(scope, receive, send)
