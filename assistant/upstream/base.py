"""What every upstream (a language model behind an API, or the offline provider) yields.

The generation runner (``assistant.runner``) consumes a provider's ``stream_reply()`` under
``aclosing``: closing the generator early (Stop, shutdown) must close the upstream HTTP
response, so the upstream sees the disconnect and stops generating (and billing).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

#: Rough characters per token (English text), to estimate usage when an upstream reports none.
CHARS_PER_TOKEN = 4


def estimate_tokens(characters: int) -> int:
    """About how many tokens ``characters`` characters of text make (rounded up)."""
    return -(-characters // CHARS_PER_TOKEN)


@dataclass(frozen=True, slots=True)
class Usage:
    """Token usage of one answer, as the upstream reported it (or as estimated)."""

    prompt_tokens: int
    completion_tokens: int
    estimated: bool = False

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class Chunk:
    """One piece of an answer's stream: text, and/or how it ended, and/or usage.

    ``text`` is "" for chunks that carry only ``finish_reason``, ``usage`` or ``model``.
    """

    text: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None
    model: str | None = None


class UpstreamError(Exception):
    """The upstream failed; ``reason`` is short, safe to show to the user, and logged.

    Examples: "the model server refused the connection", "the model server answered 429
    (rate limited)", "no data from the model for 30 s", "the model's stream ended early".
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Provider(Protocol):
    """An upstream that answers a conversation."""

    #: Shown in the page and stored on each answer ("offline docs assistant", a model id).
    name: str
    #: True for the offline provider: the page says how to connect a real model.
    offline: bool

    def stream_reply(self, messages: list[dict]) -> AsyncIterator[Chunk]:
        """Yield the answer to ``messages`` (OpenAI chat format: role/content dicts).

        An async generator. It returns normally only when the upstream said the answer
        is complete (``[DONE]`` or a ``finish_reason``); every failure raises
        ``UpstreamError``. Closing it early closes the upstream request.
        """
        ...
