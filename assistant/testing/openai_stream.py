"""The bytes of an OpenAI chat-completions event stream, with the variations servers have.

Used by the fake upstream to answer, and by tests to build exact streams of their own (to
split at chosen byte offsets, say). No Django, no I/O.
"""

from __future__ import annotations

import json

USAGE_PLACEMENTS = ("separate", "with_finish", "timings", "none")
DONE_STYLES = ("space", "nospace", "none")
ERROR_STYLES = ("event", "data")
DEFAULT_MODEL = "fake-model"


def sse_event(payload: dict | str, *, event: str | None = None, crlf: bool = False) -> bytes:
    """One event: ``payload`` (JSON-encoded unless a string) as its single ``data:`` line."""
    newline = "\r\n" if crlf else "\n"
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    head = f"event: {event}{newline}" if event else ""
    return f"{head}data: {data}{newline}{newline}".encode()


def chunk_payload(
    *, model: str, content: str | None = None, role: str | None = None, finish_reason=None
) -> dict:
    delta = {}
    if role is not None:
        delta["role"] = role
    if content is not None:
        delta["content"] = content
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }


def openai_events(
    tokens: list[str],
    *,
    model: str = DEFAULT_MODEL,
    finish_reason: str | None = "stop",
    usage: str = "separate",
    prompt_tokens: int = 7,
    completion_tokens: int | None = None,
    done: str = "space",
    crlf: bool = False,
    end_early: bool = False,
) -> list[bytes]:
    """The events of one streamed answer: a role chunk, one chunk per token, then the end.

    ``usage``: "separate" (a last chunk with empty choices, as OpenAI sends with
    include_usage), "with_finish" (in the finish_reason chunk), "timings" (llama.cpp's
    ``timings`` in the finish_reason chunk, no ``usage``), "none". ``done``: "space"
    (``data: [DONE]``), "nospace" (``data:[DONE]``), "none". ``end_early`` stops after the
    tokens: no finish_reason, no usage, no ``[DONE]``.
    """
    if usage not in USAGE_PLACEMENTS:
        raise ValueError(f"usage must be one of {USAGE_PLACEMENTS}, not {usage!r}")
    if done not in DONE_STYLES:
        raise ValueError(f"done must be one of {DONE_STYLES}, not {done!r}")
    completion_tokens = len(tokens) if completion_tokens is None else completion_tokens
    counts = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    events = [sse_event(chunk_payload(model=model, role="assistant", content=""), crlf=crlf)]
    events += [sse_event(chunk_payload(model=model, content=t), crlf=crlf) for t in tokens]
    if end_early:
        return events
    finish = chunk_payload(model=model, finish_reason=finish_reason)
    if usage == "with_finish":
        finish["usage"] = counts
    elif usage == "timings":
        finish["timings"] = {"cache_n": 0, "prompt_n": prompt_tokens}
        finish["timings"]["predicted_n"] = completion_tokens
    events.append(sse_event(finish, crlf=crlf))
    if usage == "separate":
        final = chunk_payload(model=model) | {"choices": [], "usage": counts}
        events.append(sse_event(final, crlf=crlf))
    if done != "none":
        newline = "\r\n" if crlf else "\n"
        space = " " if done == "space" else ""
        events.append(f"data:{space}[DONE]{newline}{newline}".encode())
    return events


def openai_stream(tokens: list[str], **options) -> bytes:
    """``openai_events`` joined: the whole body."""
    return b"".join(openai_events(tokens, **options))


def error_event(message: str, *, style: str = "event", crlf: bool = False) -> bytes:
    """An error in the middle of a stream: ``event: error`` or a ``data: {"error": ...}``."""
    if style not in ERROR_STYLES:
        raise ValueError(f"error style must be one of {ERROR_STYLES}, not {style!r}")
    payload = {"error": {"message": message, "type": "server_error"}}
    return sse_event(payload, event="error" if style == "event" else None, crlf=crlf)
