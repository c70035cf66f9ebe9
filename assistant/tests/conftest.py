"""Fixtures of the assistant's tests: conversations (the fake upstream's are in conftest.py
at the root: the chat's tests use it too)."""

from __future__ import annotations

import uuid

import pytest

from assistant import services


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
