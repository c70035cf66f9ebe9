"""Fixtures of the assistant's tests: the fake upstream, and the upstream HTTP clients."""

from __future__ import annotations

import pytest

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
