"""The offline docs assistant: answers from the project's own documentation, no network.

It is what answers when ``LLM_BASE_URL`` is unset, so ``make run`` works on a bare machine,
and it streams at a model's pace (``LLM_OFFLINE_TOKENS_PER_SECOND``) so that the whole
streaming path (persisting, publishing, Stop, resume) is exercised the same way.
Deterministic: the same question gets the same answer, token for token.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

from .base import Chunk, Usage, estimate_tokens
from .docs_search import DocsIndex, Section, cached_docs

NAME = "offline docs assistant"
PREFACE = (
    "This is the offline docs assistant, answering from streamsite's own documentation; "
    "set LLM_BASE_URL (and LLM_MODEL, LLM_API_KEY) to connect a real model."
)
# A second section is quoted when it scores at least this share of the best one.
SECOND_SECTION_SHARE = 0.6
QUOTE_CHARS = 1500
TOKEN = re.compile(r"\s+|\S+\s*")


def word_tokens(text: str) -> list[str]:
    """``text`` as words, each with the whitespace after it; they join back to ``text``."""
    return TOKEN.findall(text)


def last_user_message(messages: list[dict]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user" and isinstance(message.get("content"), str):
            return message["content"]
    return ""


def quote(section: Section) -> str:
    """The section's text, cut at a line end when longer than QUOTE_CHARS."""
    text = section.text
    if len(text) <= QUOTE_CHARS:
        return text
    cut = text.rfind("\n", 0, QUOTE_CHARS)
    return text[: cut if cut > 0 else QUOTE_CHARS].rstrip() + "\n…"


def compose_answer(index: DocsIndex, question: str) -> str:
    """The preface, then the best one or two sections quoted with file and heading."""
    found = index.search(question, limit=2)
    if not found:
        topics = ", ".join(index.topics())
        return (
            f"{PREFACE}\n\nNothing in the documentation matches that question. "
            f"Try asking about one of these topics: {topics}."
        )
    best_score = found[0][0]
    quoted = [section for score, section in found if score >= SECOND_SECTION_SHARE * best_score]
    parts = [PREFACE]
    for position, section in enumerate(quoted):
        source = "From" if position == 0 else "Also from"
        parts.append(f'{source} {section.path}, "{section.heading}":\n\n{quote(section)}')
    return "\n\n".join(parts)


class OfflineProvider:
    """Answers the last user message by quoting the documentation, paced like a model."""

    name = NAME
    offline = True

    def __init__(self, tokens_per_second: float, docs_dir: Path, readme: Path) -> None:
        self.tokens_per_second = tokens_per_second
        self.docs_dir = Path(docs_dir)
        self.readme = Path(readme)

    def __repr__(self) -> str:
        return f"<OfflineProvider {self.tokens_per_second} tokens/s from {self.docs_dir}>"

    async def answer(self, messages: list[dict]) -> str:
        """The whole answer to ``messages`` (read from the documentation once per process)."""
        index = await asyncio.to_thread(cached_docs, self.docs_dir, self.readme)
        return compose_answer(index, last_user_message(messages))

    async def stream_reply(self, messages: list[dict]) -> AsyncIterator[Chunk]:
        tokens = word_tokens(await self.answer(messages))
        # Token i is due at start + i / rate: sleeping until each due time, not for a
        # fixed interval, keeps the slowness of one wake-up from adding to the next.
        start = time.monotonic()
        for position, token in enumerate(tokens):
            delay = start + position / self.tokens_per_second - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            yield Chunk(text=token)
        prompt = sum(estimate_tokens(len(str(m.get("content", "")))) for m in messages)
        usage = Usage(prompt, len(tokens), estimated=True)
        yield Chunk(finish_reason="stop", usage=usage, model=self.name)
