"""Fixtures of the assistant's tests: the fake upstream, its HTTP clients, conversations."""

from __future__ import annotations

import uuid

import pytest

from assistant import services
from assistant.testing.fake_upstream_process import FakeUpstreamProcess


@pytest.fixture(scope="session")
def fake_upstream_server():
    """One fake upstream process for the session (no Django, no database: see its module)."""
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

    Like ``live_servers`` (conftest.py), with ``LLM_BASE_URL`` set: a server per test would
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


@pytest.fixture(params=["daphne", "uvicorn"])
def assistant_server(request, assistant_servers, transactional_db, fake_upstream):
    """A live server (daphne, then uvicorn) whose assistant asks the (reset) fake upstream."""
    return assistant_servers(request.param)


@pytest.fixture
async def close_upstream_clients():
    """Close this test's loop's shared upstream client after the test (its sockets with it)."""
    from assistant.upstream import aclose_clients

    yield
    await aclose_clients()


@pytest.fixture
def conversation(user):
    """A conversation of ``user`` (alice) with nothing asked yet."""
    return services.conversation_create(owner=user, title="About streams")


@pytest.fixture
def ask(conversation, user):
    """``ask("text")``: store a question in ``conversation`` and return its answer."""

    def ask_(text: str = "What is SSE?", *, by=None, client_id=None, conversation_id=None):
        return services.question_ask(
            user=by or user,
            conversation_id=conversation_id or conversation.pk,
            text=text,
            client_id=client_id or uuid.uuid4(),
        ).answer

    return ask_
