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
