"""``manage.py notify``: in-process through ``call_command``, and as its own process.

As its own process the command has its own channel layer: on Redis it reaches streams that
a running server serves; in memory it cannot, says so, and the stored notification reaches
pages when their streams resume. The cross-process test asserts whichever applies, so it
runs (and means something) on both backends.
"""

import asyncio
import json
import os
import subprocess
import sys
from io import StringIO

import httpx
import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.management import CommandError, call_command
from django.test import Client

from notifications.events import ANNOUNCEMENTS_KEY, user_key
from notifications.management.commands.notify import IN_MEMORY_WARNING, layer_is_in_memory
from notifications.models import Notification
from streamsite.testing.live_server import database_url_for_tests
from streamsite.testing.sse import StreamReader

#: A generous bound on one run of the command: it normally takes about a second.
SUBPROCESS_TIMEOUT = 60

ERRORS = [
    pytest.param(
        ["--user", "nobody", "--title", "Hi"],
        "No user named 'nobody': nothing was sent.",
        id="unknown-user",
    ),
    pytest.param(
        ["--user", "sleeper", "--title", "Hi"],
        "User 'sleeper' is inactive: nothing was sent.",
        id="inactive-user",
    ),
    pytest.param(
        ["--user", "alice", "--title", ""],
        "Nothing was sent: --title: This field cannot be blank.",
        id="empty-title",
    ),
    pytest.param(
        ["--user", "alice", "--title", "x" * 201],
        "Nothing was sent: --title: Ensure this value has at most 200 characters (it has 201).",
        id="title-too-long",
    ),
    pytest.param(
        ["--user", "alice", "--title", "Hi", "--url", "javascript:alert(1)"],
        "Nothing was sent: --url: Use a path on this site (starting with /) or an http(s) URL.",
        id="javascript-url",
    ),
    pytest.param(
        ["--user", "alice", "--title", "Hi", "--level", "critical"],
        "Nothing was sent: --level: Value 'critical' is not a valid choice. "
        "Use one of: info, success, warning, error.",
        id="unknown-level",
    ),
    pytest.param(
        ["--all", "--title", "", "--url", "data:text/html,x"],
        "Nothing was sent: --title: This field cannot be blank.; "
        "--url: Use a path on this site (starting with /) or an http(s) URL.",
        id="all-with-invalid-fields",
    ),
    pytest.param(
        ["--user", "alice", "--all", "--title", "Hi"],
        "Give either --user USERNAME or --all, not both.",
        id="both-user-and-all",
    ),
    pytest.param(["--title", "Hi"], "Say whom to notify: --user USERNAME or --all.", id="neither"),
]


@pytest.fixture
def people(make_user):
    """alice (active), bob (active) and sleeper (inactive)."""
    return {
        "alice": make_user("alice"),
        "bob": make_user("bob"),
        "sleeper": make_user("sleeper", is_active=False),
    }


def notify(*args: str) -> tuple[str, str]:
    """Run the command in this process; return (stdout, stderr)."""
    out, err = StringIO(), StringIO()
    call_command("notify", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def expected_stderr() -> str:
    """What a successful run writes to stderr: the warning, only on the in-memory layer."""
    return IN_MEMORY_WARNING + "\n" if layer_is_in_memory() else ""


def notify_environment() -> dict[str, str]:
    """This environment (REDIS_URL included), pointed at the test database."""
    return {**os.environ, "DATABASE_URL": database_url_for_tests(), "PYTHONUNBUFFERED": "1"}


def run_notify(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``manage.py notify`` as its own process, as an operator would."""
    return subprocess.run(
        [sys.executable, "manage.py", "notify", *args],
        cwd=settings.BASE_DIR,
        env=env or notify_environment(),
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,  # a hung exit (unclosed pools, threads) fails here
        check=False,
    )


# In this process ------------------------------------------------------------------------


def test_notifies_one_user_and_publishes_after_commit(capture_published, people):
    alice = people["alice"]
    with capture_published() as events:
        out, err = notify(
            "--user", "alice", "--title", "Deploy finished", "--body", "v2",
            "--url", "/chat/", "--level", "success",
        )  # fmt: skip
    notification = Notification.objects.get()
    assert out == f"Notified alice: id {notification.pk}\n"
    assert err == expected_stderr()
    assert (notification.recipient, notification.title, notification.body) == (
        alice,
        "Deploy finished",
        "v2",
    )
    assert (notification.url, notification.level) == ("/chat/", "success")
    assert events == [
        (
            user_key(alice.pk),
            {"kind": "created", **notification.as_event(), "unread": 1, "previous": 0},
        )
    ]


def test_notifies_every_active_user(capture_published, people):
    with capture_published() as events:
        out, _ = notify("--all", "--title", "Maintenance at noon", "--level", "warning")
    assert out == "Notified 2 active users\n"
    # An announcement: stored once, one event that every stream takes.
    announcement = Notification.objects.get()
    assert announcement.recipient_id is None
    assert [key for key, _ in events] == [ANNOUNCEMENTS_KEY]


def test_counts_are_printed_with_thousands_separators(people, monkeypatch):
    from notifications import services

    monkeypatch.setattr(services, "notifications_create_for_active_users", lambda **_: 1234)
    assert notify("--all", "--title", "Hi")[0] == "Notified 1,234 active users\n"


@pytest.mark.parametrize(("args", "message"), ERRORS)
def test_mistakes_are_one_line_command_errors_and_send_nothing(
    capture_published, people, args, message
):
    with capture_published() as events, pytest.raises(CommandError) as error:
        notify(*args)
    assert str(error.value) == message
    assert not Notification.objects.exists()
    assert events == []


def test_warns_that_the_in_memory_layer_cannot_reach_a_server(capture_published, people, settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    with capture_published():
        out, err = notify("--user", "alice", "--title", "Hi")
    assert out.startswith("Notified alice: id ")
    assert err == IN_MEMORY_WARNING + "\n"
    assert "REDIS_URL" in err and "reload or reconnect" in err


def test_publishing_from_a_command_leaves_no_connection_pool_open(capture_published, people):
    """Regression guard: ``async_to_sync`` runs each publish in a fresh event loop, and
    channels-redis keeps a connection pool per loop; its loop-close hook must close them
    (a pool left behind is a leaked Redis connection per publish)."""
    layer = get_channel_layer()
    pools_before = set(getattr(layer, "_layers", {}))  # channels-redis only
    with capture_published() as events:
        notify("--user", "alice", "--title", "Hi")
        notify("--all", "--title", "Hello all")
    assert len(events) == 2
    assert set(getattr(layer, "_layers", {})) <= pools_before


# As its own process ---------------------------------------------------------------------


def test_process_notifies_a_user(transactional_db, people):
    result = run_notify("--user", "alice", "--title", "From the shell")
    assert result.returncode == 0, result.stderr
    notification = Notification.objects.get()
    assert (notification.recipient, notification.title) == (people["alice"], "From the shell")
    assert result.stdout == f"Notified alice: id {notification.pk}\n"
    assert result.stderr == expected_stderr()


def test_process_notifies_every_active_user(transactional_db, people):
    result = run_notify("--all", "--title", "Announcement")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Notified 2 active users\n"
    assert result.stderr == expected_stderr()
    assert list(Notification.objects.values_list("recipient_id", "title")) == [
        (None, "Announcement")
    ]


def test_process_warns_when_the_layer_is_in_memory(transactional_db, people):
    """Whatever this run uses, a process without REDIS_URL is warned."""
    env = {k: v for k, v in notify_environment().items() if k != "REDIS_URL"}
    result = run_notify("--user", "alice", "--title", "Hi", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == IN_MEMORY_WARNING + "\n"


@pytest.mark.parametrize(("args", "message"), ERRORS)
def test_process_mistakes_exit_1_with_one_line_and_no_traceback(
    transactional_db, people, args, message
):
    result = run_notify(*args)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == f"CommandError: {message}\n"
    assert not Notification.objects.exists()


# Across processes -----------------------------------------------------------------------


def session_cookies(user) -> dict[str, str]:
    client = Client()
    client.force_login(user)
    name = settings.SESSION_COOKIE_NAME
    return {name: client.cookies[name].value}


@pytest.mark.live_server
async def test_process_reaches_a_stream_served_by_a_running_server(live_server_asgi, user):
    """On Redis a ``notify`` process reaches an open stream of another process live. In
    memory it cannot: it says so, and a stream resuming from id 0 replays the notification."""
    cookies = await sync_to_async(session_cookies)(user)
    env = notify_environment()
    args = ("--user", user.username, "--title", "Deploy finished", "--level", "success")
    async with httpx.AsyncClient(
        base_url=live_server_asgi.url, cookies=cookies, timeout=10
    ) as client:
        async with client.stream("GET", "/notifications/stream/") as response:
            assert response.status_code == 200
            stream = StreamReader(response.aiter_raw())
            await stream.until(lambda e: e["event"] == "unread")  # subscribed and caught up
            result = await asyncio.to_thread(run_notify, *args, env=env)
            assert result.returncode == 0, result.stderr
            notification_id = int(result.stdout.rsplit(" ", 1)[-1])
            if layer_is_in_memory():
                assert result.stderr == IN_MEMORY_WARNING + "\n"
            else:
                assert result.stderr == ""
                event = await stream.until(lambda e: e["event"] == "notification")
                assert event["id"] == str(notification_id)
                assert json.loads(event["data"])["title"] == "Deploy finished"
                assert await stream.next_event() == {"event": "unread", "data": '{"count":1}'}
        if layer_is_in_memory():
            async with client.stream("GET", "/notifications/stream/?last_event_id=0") as response:
                assert response.status_code == 200
                resumed = StreamReader(response.aiter_raw())
                event = await resumed.until(lambda e: e["event"] == "notification")
                assert event["id"] == str(notification_id)
                assert json.loads(event["data"])["title"] == "Deploy finished"
