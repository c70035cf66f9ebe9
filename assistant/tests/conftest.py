"""Fixtures of the assistant tests."""

import pytest

from assistant import services


@pytest.fixture
def conversation(user):
    """A conversation of ``user`` (alice) with nothing asked yet."""
    return services.conversation_create(owner=user, title="About streams")


@pytest.fixture
def ask(conversation, user):
    """``ask("text")``: store a question in ``conversation`` and return its answer."""
    import uuid

    def ask_(text: str = "What is SSE?", *, by=None, client_id=None, conversation_id=None):
        return services.question_ask(
            user=by or user,
            conversation_id=conversation_id or conversation.pk,
            text=text,
            client_id=client_id or uuid.uuid4(),
        ).answer

    return ask_
