"""Fixtures every app's tests share: users, clients, the channel layer, captured events,
live ASGI servers and browsers, the assistant's fake upstream.

One suite, two backends: the same tests run on the embedded default (SQLite, in-memory
layer) and, with DATABASE_URL and REDIS_URL set, on PostgreSQL and Redis.
"""

from __future__ import annotations

import json
from contextlib import contextmanager

import pytest
from channels.layers import get_channel_layer
from django.contrib.auth import get_user_model

from streamsite.streaming import publish as publish_module
from streamsite.testing import PASSWORD
from streamsite.testing.services import (
    CHROMIUM,
    missing_services,
    services_required,
    skip_or_fail,
)


def pytest_configure(config):
    """Under REQUIRE_SERVICES=1, refuse to run at all without the real services."""
    if services_required() and (missing := missing_services()):
        raise pytest.UsageError(
            "REQUIRE_SERVICES=1 but these are missing:\n  " + "\n  ".join(missing)
        )


#: The fixtures whose parameter is the kind of live server a test runs against.
SERVER_FIXTURES = ("live_server_asgi", "assistant_server")


def browser_server_for_this_pass() -> str | None:
    """The one server the browser tests use on this backend, or None for both.

    Each browser test is parametrised over daphne and uvicorn, and the suite runs on both
    backends: four runs of every page. A page's script does not change with the backend,
    so each pass drives the pages through the server that goes with its backend, as
    people run them: daphne (``runserver``) on the embedded default, uvicorn (``serve``)
    on PostgreSQL + Redis. Every browser test still meets both servers in CI; the tests
    without a browser run against both servers on both backends. ``BROWSER_SERVERS=both``
    runs all four.
    """
    import os

    from django.conf import settings

    if os.environ.get("BROWSER_SERVERS", "").strip() == "both":
        return None
    embedded = settings.DATABASES["default"]["ENGINE"].endswith("sqlite3")
    return "daphne" if embedded else "uvicorn"


def pytest_collection_modifyitems(config, items):
    """Browser tests: only this pass's server (``browser_server_for_this_pass``)."""
    server = browser_server_for_this_pass()
    if server is None:
        return
    kept, deselected = [], []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        kinds = {params[name] for name in SERVER_FIXTURES if name in params}
        if item.get_closest_marker("browser") and kinds and server not in kinds:
            deselected.append(item)
        else:
            kept.append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept


def pytest_report_header(config):
    from django.conf import settings

    engine = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
    layer = settings.CHANNEL_LAYERS["default"]["BACKEND"].rsplit(".", 1)[-1]
    return f"streamsite backends: database={engine}, channel layer={layer}"


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix):
    """A test database of this run's own (name suffixed with the pid).

    Two test runs on one machine (a developer's and CI's, or parallel agents) would
    otherwise share, and drop under each other, one SQLite file or PostgreSQL database.
    """
    import os
    from pathlib import Path

    from django.conf import settings

    suffix = str(os.getpid())
    for db in settings.DATABASES.values():
        test = db.setdefault("TEST", {})
        if db["ENGINE"].endswith("sqlite3"):
            path = Path(
                test.get("NAME") or Path(db["NAME"]).with_name(f"test_{Path(db['NAME']).name}")
            )
            test["NAME"] = str(path.with_name(f"{path.stem}_{suffix}{path.suffix}"))
        else:
            test["NAME"] = f"{test.get('NAME') or 'test_' + db['NAME']}_{suffix}"


@pytest.fixture(scope="session")
def remove_sqlite_side_files():
    """Delete a SQLite test database's -wal and -shm files once the database is dropped.

    Django removes the database file, but threads of the run may still hold connections,
    which leave the write-ahead log files behind. Set up before (so torn down after)
    pytest-django's ``django_db_setup``.
    """
    yield
    from pathlib import Path

    from django.conf import settings

    for db in settings.DATABASES.values():
        name = db.get("TEST", {}).get("NAME")
        if db["ENGINE"].endswith("sqlite3") and name:
            for suffix in ("-wal", "-shm"):
                Path(f"{name}{suffix}").unlink(missing_ok=True)


@pytest.fixture(scope="session")
def django_db_setup(remove_sqlite_side_files, django_db_setup, django_db_blocker):
    """pytest-django's test database, with every connection to it closed before it is dropped.

    PostgreSQL will not drop a database that has sessions, and two kinds outlive the tests:
    psycopg's pool keeps connections after Django "closes" them, and ``sync_to_async``
    executor threads of async tests keep the connections they opened.
    """
    yield
    from django.db import connections

    with django_db_blocker.unblock():
        for connection in connections.all():
            if connection.vendor != "postgresql":
                continue
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            connection.close()
            connection.close_pool()


# Server logs ---------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def clean_server_logs(request):
    """Fail the test if a server process it used logged an error or traceback it did not
    declare (``server.expect_log(pattern)``, ``@pytest.mark.expect_log(pattern)``).

    Autouse and function-scoped, so it is torn down after the test's own servers stopped:
    what they log while stopping counts too; a record logged between two tests is reported
    by the next one (with the window it read). See ``streamsite.testing.server_log``.
    """
    from streamsite.testing.server_log import check_watched

    yield
    expected = [p for mark in request.node.iter_markers("expect_log") for p in mark.args]
    if report := check_watched(expected):
        pytest.fail(f"a server logged what the test did not expect:\n{report}", pytrace=False)


@pytest.fixture(scope="session", autouse=True)
def clean_server_logs_at_exit():
    """What session servers log while they stop, at the end of the run."""
    yield
    from streamsite.testing.server_log import check_watched

    if report := check_watched():
        pytest.fail(f"a server logged while stopping:\n{report}", pytrace=False)


# Users and clients ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def password_hash():
    """``PASSWORD`` hashed once: the real (slow) hasher, so servers can check logins."""
    from django.contrib.auth.hashers import make_password

    return make_password(PASSWORD)


@pytest.fixture
def make_user(db, password_hash):
    """Create a user whose password is ``PASSWORD``: ``make_user("carol", is_staff=True)``."""

    def make(username: str, **fields):
        return get_user_model().objects.create(
            username=username, email=f"{username}@example.com", password=password_hash, **fields
        )

    return make


@pytest.fixture
def user(make_user):
    return make_user("alice")


@pytest.fixture
def other_user(make_user):
    return make_user("bob")


@pytest.fixture
def staff_user(make_user):
    return make_user("staff", is_staff=True, is_superuser=True)


@pytest.fixture
def user_client(client, user):
    """A Django test client logged in as ``user``."""
    client.force_login(user)
    return client


# Channel layer and published events ---------------------------------------------------


@pytest.fixture(autouse=True)
def fresh_channel_layer():
    """A new channel-layer instance for every test.

    channels-redis binds asyncio locks to the first event loop that uses an instance; a
    server process has one loop, but each async test has its own.
    """
    from channels.layers import channel_layers

    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


@pytest.fixture(autouse=True)
def fresh_outages():
    """Every test starts with the channel layer and Redis reachable, nothing to recover
    (streamsite.streaming.outage and .recovery keep that per process)."""
    from streamsite.streaming.outage import CHANNEL_LAYER, SHARED_REDIS
    from streamsite.streaming.recovery import LOST

    for state in (CHANNEL_LAYER, SHARED_REDIS, LOST):
        state.reset()
    yield
    for state in (CHANNEL_LAYER, SHARED_REDIS, LOST):
        state.reset()


@pytest.fixture
def channel_layer():
    """The project's channel layer, flushed after the test so no message leaks into the next."""
    from streamsite.testing.layers import flush_layer

    layer = get_channel_layer()
    yield layer
    flush_layer(layer)


@pytest.fixture
def capture_published(django_capture_on_commit_callbacks, monkeypatch, channel_layer):
    """Run on-commit callbacks and capture every event published, as ``(key, event)``.

    Batches are expanded into one ``(key, event)`` per key. Each message is round-tripped
    through JSON first, so a payload that Redis could not carry (datetime, UUID, bytes)
    fails in the test that published it. The messages are still sent, so streams under
    test receive them.
    """
    from streamsite.streaming.hub import expand_message

    @contextmanager
    def capture():
        events: list[tuple[str, dict]] = []
        # publish_on_commit logs a failed send instead of raising it, so remember the error
        # and raise it here, in the test.
        errors: list[Exception] = []
        real_publish = publish_module.publish

        def recording_publish(group: str, message: dict) -> None:
            try:
                events.extend(expand_message(json.loads(json.dumps(message))))
            except TypeError as error:
                errors.append(error)
                raise
            real_publish(group, message)

        monkeypatch.setattr(publish_module, "publish", recording_publish)
        try:
            with django_capture_on_commit_callbacks(execute=True):
                yield events
        finally:
            monkeypatch.setattr(publish_module, "publish", real_publish)
        if errors:
            raise errors[0]

    return capture


# Live servers and browsers ------------------------------------------------------------


@pytest.fixture(scope="session")
def live_servers(django_db_setup, django_db_blocker):
    """Start each kind of server once per session, on first use; stop them all at the end.

    Depends on ``django_db_setup`` so the servers stop before the test database is dropped.
    """
    from streamsite.testing.live_server import LiveServer

    servers: dict[str, LiveServer] = {}

    def get(kind: str) -> LiveServer:
        if kind not in servers or servers[kind].process.poll() is not None:
            with django_db_blocker.unblock():
                servers[kind] = LiveServer(kind).start()
        return servers[kind]

    yield get
    for server in servers.values():
        server.stop()


@pytest.fixture(params=["daphne", "uvicorn"])
def live_server_asgi(request, live_servers, transactional_db):
    """The real ASGI app in its own process: daphne, then the production server (uvicorn).

    Tests that use it commit their data (``transactional_db``), so the server sees it.
    One server of each kind serves the whole session. Known limit: the flush after each
    transactional test re-creates content types under new ids, which this long-lived
    process has cached, so the admin's add and change views (their LogEntry) fail from
    the second test on. A test that needs them starts its own server with
    ``live_server_factory``.
    """
    return live_servers(request.param)


@pytest.fixture
def live_server_factory(transactional_db):
    """Start servers of one's own (for restarts, or several processes); all stopped after."""
    from streamsite.testing.live_server import LiveServer

    started: list[LiveServer] = []

    def start(kind: str = "daphne", *, workers: int = 1, **extra_env: str) -> LiveServer:
        server = LiveServer(kind, extra_env=extra_env, workers=workers).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
async def browser():
    """A headless Chromium (Debian's, driven by Playwright's async API) for one test.

    Async and per test: Playwright's sync API keeps its event loop current in the main
    thread for as long as it lives, which breaks every later ``async_to_sync``.
    """
    if not CHROMIUM.exists():
        skip_or_fail(f"{CHROMIUM} is missing: apt-get install -y chromium")
    from playwright.async_api import async_playwright

    from streamsite.testing.browser import launch_chromium

    async with async_playwright() as playwright:
        chromium = await launch_chromium(playwright)
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture
async def browser_context(browser):
    """A fresh browser profile (cookies, storage) for one test."""
    context = await browser.new_context()
    context.set_default_timeout(10_000)
    yield context
    await context.close()


@pytest.fixture
def logged_in_page(browser, live_server_asgi):
    """Return ``await page_for(user)``: a page in its own profile, logged in as ``user``."""
    from asgiref.sync import sync_to_async

    from streamsite.testing.browser import session_cookie_for

    async def page_for(user):
        context = await browser.new_context()
        context.set_default_timeout(10_000)
        cookie = await sync_to_async(session_cookie_for)(user, live_server_asgi.url)
        await context.add_cookies([cookie])
        return await context.new_page()

    # Each page's context closes with the browser at the end of the test.
    return page_for


@pytest.fixture
def private_redis():
    """A redis-server of the test's own, which the test may restart (see PrivateRedis)."""
    from streamsite.testing.layers import PrivateRedis

    redis = PrivateRedis()
    if redis.binary is None:
        skip_or_fail("redis-server is not installed")
    yield redis.start()
    redis.stop()


@pytest.fixture
async def hub():
    """A hub on the project's channel layer for this test's event loop, closed after it."""
    from streamsite.streaming.hub import Hub

    hub = Hub()
    yield hub
    await hub.close()


# The assistant's fake upstream --------------------------------------------------------


@pytest.fixture(scope="session")
def fake_upstream_server():
    """One fake upstream process for the session (no Django, no database: see its module)."""
    from assistant.testing.fake_upstream_process import FakeUpstreamProcess

    server = FakeUpstreamProcess().start()
    yield server
    server.stop()


@pytest.fixture
def fake_upstream(fake_upstream_server):
    """The session's fake upstream, reset for this test: no scripts, no requests.

    ``.base_url`` (for LLM_BASE_URL, ends in /v1), ``.script(**script)``,
    ``.scripts([...])``, ``.requests()``, ``.wait_disconnected(index, timeout)``, and their
    async twins ``ascript``, ``ascripts``, ``arequests``, ``await_disconnected``.
    """
    fake_upstream_server.reset()
    return fake_upstream_server


#: The environment of the live servers the browser tests use: the fake upstream answers.
BROWSER_SERVER_ENV = {"LLM_TIMEOUT_SECONDS": "5", "ASSISTANT_FLUSH_MILLISECONDS": "20"}


@pytest.fixture(scope="session")
def assistant_servers(django_db_setup, django_db_blocker, fake_upstream_server):
    """Start each kind of server pointed at the fake upstream once per session, on first use.

    Like ``live_servers`` (above), with ``LLM_BASE_URL`` set: a server per test would
    cost seconds each. Stopped before the fake upstream and the test database go.
    """
    from streamsite.testing.live_server import LiveServer

    env = {"LLM_BASE_URL": fake_upstream_server.base_url, **BROWSER_SERVER_ENV}
    servers: dict[str, LiveServer] = {}

    def get(kind: str) -> LiveServer:
        if kind not in servers or servers[kind].process.poll() is not None:
            with django_db_blocker.unblock():
                servers[kind] = LiveServer(kind, extra_env=env).start()
        return servers[kind]

    yield get
    for server in servers.values():
        server.stop()


@pytest.fixture
async def close_upstream_clients():
    """Close this test's loop's shared upstream client after the test (its sockets with it)."""
    from assistant.upstream import aclose_clients

    yield
    await aclose_clients()
