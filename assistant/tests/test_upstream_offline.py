"""The offline docs assistant: answers from docs/ and README.md, paced like a model."""

from __future__ import annotations

import time
from contextlib import aclosing
from pathlib import Path

from django.conf import settings

from assistant.upstream.base import Chunk
from assistant.upstream.offline import OfflineProvider, word_tokens

BASE_DIR = Path(settings.BASE_DIR)
FAST = 100_000  # tokens per second: no pacing to speak of


def provider(tokens_per_second: float = FAST) -> OfflineProvider:
    return OfflineProvider(tokens_per_second, BASE_DIR / "docs", BASE_DIR / "README.md")


def ask(question: str) -> list[dict]:
    return [
        {"role": "user", "content": "an earlier question"},
        {"role": "assistant", "content": "an earlier answer"},
        {"role": "user", "content": question},
    ]


async def answer(question: str) -> tuple[str, list[Chunk]]:
    chunks = [chunk async for chunk in provider().stream_reply(ask(question))]
    return "".join(chunk.text for chunk in chunks), chunks


async def test_quotes_the_section_about_last_event_id():
    text, _ = await answer("How does the Last-Event-ID header work?")

    assert 'From docs/protocol.md, "Protocols > Notifications stream' in text
    assert "> Request" in text.split("\n\n")[1]
    assert "`Last-Event-ID` header | Resume: replay every notification" in text


async def test_quotes_the_section_about_announcements():
    text, _ = await answer("How are announcements stored?")

    assert 'From docs/architecture.md, "Architecture > Announcements: stored once' in text
    assert "A notification to every user" in text


async def test_says_it_is_offline_and_how_to_connect_a_model():
    text, _ = await answer("How are announcements stored?")

    first_paragraph = text.split("\n\n")[0]
    assert "offline docs assistant" in first_paragraph
    assert "LLM_BASE_URL" in first_paragraph
    assert "LLM_MODEL" in first_paragraph
    assert "LLM_API_KEY" in first_paragraph


async def test_an_unknown_question_says_so_and_suggests_topics():
    text, chunks = await answer("What is the airspeed velocity of an unladen swallow?")

    assert "Nothing in the documentation matches that question." in text
    assert "Try asking about one of these topics:" in text
    assert "Environment variables" in text
    assert chunks[-1].finish_reason == "stop"


async def test_streams_word_tokens_then_a_final_chunk_with_estimated_usage():
    text, chunks = await answer("How are announcements stored?")

    *tokens, final = chunks
    assert [chunk.text for chunk in tokens] == word_tokens(text)
    assert all(chunk.text and chunk.text.strip() for chunk in tokens[1:])
    assert final.text == ""
    assert final.finish_reason == "stop"
    assert final.model == "offline docs assistant"
    assert final.usage.estimated is True
    assert final.usage.completion_tokens == len(tokens)
    assert final.usage.prompt_tokens > 0


async def test_the_same_question_gets_the_same_answer():
    first, _ = await answer("Which environment variables are there?")
    second, _ = await answer("Which environment variables are there?")

    assert first == second


def test_word_tokens_keep_whitespace_and_join_back():
    text = "  Two  words\nand more\n\n"
    assert word_tokens(text) == ["  ", "Two  ", "words\n", "and ", "more\n\n"]
    assert "".join(word_tokens(text)) == text


async def test_paces_tokens_at_the_rate_given():
    """60 intervals at 200 tokens/s take at least 0.3 s (a lower bound only: a busy
    machine may be slower, never faster)."""
    started = time.monotonic()
    count = 0
    async with aclosing(provider(tokens_per_second=200).stream_reply(ask("announcements"))) as s:
        async for chunk in s:
            count += bool(chunk.text)
            if count == 61:
                break
    elapsed = time.monotonic() - started

    assert count == 61
    assert elapsed >= 0.25
