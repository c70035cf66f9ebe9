"""Fixtures of the assistant's tests: servers of each kind, conversations (the fake
upstream's fixtures and its session servers are in conftest.py at the root: the chat's
tests use them too)."""

from __future__ import annotations

import uuid

import pytest

from assistant import services


@pytest.fixture(params=["daphne", "uvicorn"])
def assistant_server(request, assistant_servers, transactional_db, fake_upstream):
    """A live server (daphne, then uvicorn) whose assistant asks the (reset) fake upstream."""
    return assistant_servers(request.param)


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
