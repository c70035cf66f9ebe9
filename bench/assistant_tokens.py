"""The assistant benchmark's tokens: numbered, each carrying the fake upstream's send time.

Token ``i`` is scripted as ``w<i>@{t} ``; the fake upstream replaces ``{t}`` with
``time.monotonic()`` just before it sends the token (its ``stamp`` option). On Linux that
clock is one for every process, so whoever receives the token (the load generator, through
the site or straight from the fake) computes ``now - stamp``: the token's delivery latency.
The numbers prove a text whole: a stream's text of an answer must be exactly tokens
``0 .. n-1`` in order, each once.
"""

from __future__ import annotations

import re

PLACEHOLDER = "{t}"
TOKEN = re.compile(r"w(\d+)@(\d+\.\d{6}) ")
WHOLE = re.compile(r"(?:w\d+@\d+\.\d{6} )*")


def script(count: int, delay: float) -> dict:
    """A fake-upstream script: ``count`` stamped tokens, ``delay`` seconds before each."""
    return {
        "tokens": [f"w{i}@{PLACEHOLDER} " for i in range(count)],
        "token_delay": delay,
        "stamp": PLACEHOLDER,
        "model": "bench-model",
    }


def tokens_in(text: str) -> list[tuple[int, float]]:
    """(number, send time) of every token in ``text``."""
    return [(int(number), float(sent)) for number, sent in TOKEN.findall(text)]


def check_answer(text: str, count: int) -> str | None:
    """None if ``text`` is exactly tokens 0..count-1 in order; otherwise what is wrong."""
    if not WHOLE.fullmatch(text):
        return "not made of whole tokens"
    numbers = [number for number, _ in tokens_in(text)]
    if numbers != list(range(count)):
        missing = count - len(set(numbers) & set(range(count)))
        return f"{len(numbers)} tokens, {missing} missing, in order: {numbers == sorted(numbers)}"
    return None
