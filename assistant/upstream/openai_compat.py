"""Stream an answer from an OpenAI-compatible chat-completions server.

OpenAI, vLLM, Ollama, llama.cpp's server and LiteLLM all answer
``POST {base}/chat/completions`` with ``"stream": true`` by Server-Sent Events: each
``data:`` a JSON chunk, the last one ``data: [DONE]``. Each quirk handled here has bitten
other clients: ``data:[DONE]`` without the space (huggingface_hub 4536), CRLF line endings,
a multi-byte character split across network reads (ollama-js PR 256; httpx decodes
incrementally), usage in a final chunk without choices (OpenAI), next to the
finish_reason, or as llama.cpp's ``timings`` (llama.cpp 15443, 16048); an error as
``event: error`` or as ``{"error": ...}`` in the middle of a stream; a stream that ends
without ``[DONE]``. A stall is timed between events, so keepalive comments do not hide it.

Every failure becomes ``UpstreamError`` with a short reason fit to show the user: no API
key, no raw body beyond a trimmed error message. The response is read under ``async with``,
so closing the generator early closes the response and, as it is half-read, its TCP
connection: the upstream sees the disconnect and stops generating (and billing).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
from collections.abc import AsyncIterator
from contextlib import aclosing
from http import HTTPStatus

import httpx
from httpx_sse import EventSource, ServerSentEvent

from .base import Chunk, UpstreamError, Usage
from .http_clients import aclose_clients, shared_client

__all__ = ["OpenAICompatibleProvider", "aclose_clients"]

# Enough of an error body for its message; the rest is not read.
ERROR_BODY_BYTES = 4096
# Longest upstream error message quoted in a reason.
MESSAGE_CHARS = 200
MALFORMED = "the model server sent malformed data"
ENDED_EARLY = "the model's stream ended early"
#: How long the rest of a response after ``[DONE]`` is read, to keep its connection.
AFTER_DONE_SECONDS = 0.5
#: Tries for a request whose connection breaks before the response starts.
UNANSWERED_ATTEMPTS = 2


class OpenAICompatibleProvider:
    """An upstream speaking OpenAI's chat-completions streaming protocol."""

    offline = False

    def __init__(
        self, base_url: str, api_key: str, model: str, timeout_seconds: float, max_tokens: int
    ) -> None:
        self.name = model
        self.url = f"{base_url.rstrip('/')}/chat/completions"
        self.api_key = api_key
        self.model = model
        self.timeout_seconds = timeout_seconds
        self.max_tokens = max_tokens
        # Connect, write, pool, and read: the wait for the response headers and each read
        # after. The wait between events (keepalive comments do not count) is timed apart.
        self.timeout = httpx.Timeout(timeout_seconds)

    def __repr__(self) -> str:
        return f"<OpenAICompatibleProvider {self.model!r} at {self.url!r}>"

    def request_body(self, messages: list[dict]) -> dict:
        return {
            "model": self.model,
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": self.max_tokens,
        }

    def request_headers(self) -> dict[str, str]:
        headers = {
            "Accept": "text/event-stream",
            "Cache-Control": "no-store",
            # A compressing proxy would hold tokens back until a block fills.
            "Accept-Encoding": "identity",
        }
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    async def stream_reply(self, messages: list[dict]) -> AsyncIterator[Chunk]:
        """Yield the answer's chunks; return after ``[DONE]`` or a finish_reason.

        Raises ``UpstreamError`` for every failure. ``CancelledError`` and ``GeneratorExit``
        pass through untouched, closing the response on their way out.

        A request whose connection breaks before any response comes is sent once more: a
        pooled keep-alive connection that the server closes just as the request goes out
        (uvicorn closes idle ones after 5 s, httpx keeps them 5 s) is not an answer failing,
        and nothing was generated or billed for it. The OpenAI SDK retries the same way.
        """
        for attempt in range(1, UNANSWERED_ATTEMPTS + 1):
            stream = _StreamReading()
            try:
                async with shared_client().stream(
                    "POST",
                    self.url,
                    json=self.request_body(messages),
                    headers=self.request_headers(),
                    timeout=self.timeout,
                ) as response:
                    stream.started = True
                    await self._check_response(response)
                    async with aclosing(EventSource(response).aiter_sse()) as events:
                        while (event := await self._next_event(events, stream)) is not None:
                            chunk = stream.read(event, self._safe)
                            if stream.done:
                                await self._read_to_end(events)
                                return
                            if chunk is not None:
                                yield chunk
            except httpx.HTTPError as error:
                if stream.finished:
                    # The answer was complete; only its [DONE] (or trailing usage) was lost.
                    return
                if attempt < UNANSWERED_ATTEMPTS and _unanswered(error, stream):
                    continue
                raise UpstreamError(self._transport_reason(error, stream)) from error
            except httpx.InvalidURL as error:
                raise UpstreamError("LLM_BASE_URL is not a valid URL") from error
            if not stream.finished:
                raise UpstreamError(ENDED_EARLY)
            return

    async def _read_to_end(self, events: AsyncIterator[ServerSentEvent]) -> None:
        """Read what follows ``[DONE]`` (normally only the body's end) for a short while.

        A response closed before its end closes its connection too, and the next answer
        would wait for a new one (time to first token); read to the end, the connection
        goes back to the pool.
        """
        with contextlib.suppress(TimeoutError, httpx.HTTPError):
            async with asyncio.timeout(AFTER_DONE_SECONDS):
                async for _ in events:
                    pass

    async def _next_event(
        self, events: AsyncIterator[ServerSentEvent], stream: _StreamReading
    ) -> ServerSentEvent | None:
        """The next event, or None at the end of the stream; a stall raises UpstreamError."""
        try:
            async with asyncio.timeout(self.timeout_seconds):
                return await anext(events, None)
        except TimeoutError:
            if stream.finished:
                return None
            raise UpstreamError(self._stall_reason()) from None

    async def _check_response(self, response: httpx.Response) -> None:
        if not response.is_success:
            message = await self._error_body_message(response)
            raise UpstreamError(self._status_reason(response.status_code, message))
        content_type = response.headers.get("content-type", "").partition(";")[0].strip()
        if content_type.lower() != "text/event-stream":
            shown = self._safe(content_type, limit=60) or "no content type"
            raise UpstreamError(f"the model server did not answer with an event stream ({shown})")

    async def _error_body_message(self, response: httpx.Response) -> str | None:
        """The message of an error response, from at most ERROR_BODY_BYTES of its body."""
        body = b""
        try:
            async with aclosing(response.aiter_bytes()) as parts:
                async for part in parts:
                    body += part
                    if len(body) >= ERROR_BODY_BYTES:
                        break
        except httpx.HTTPError:
            pass  # the status says enough
        text = body[:ERROR_BODY_BYTES].decode("utf-8", errors="replace").strip()
        try:
            message = error_message(json.loads(text))
        except ValueError:
            # Plain text is quoted; an HTML error page is not (it is markup, not a message).
            message = None if text.startswith("<") else text.split("\n", 1)[0]
        return self._safe(message) if message else None

    def _status_reason(self, status: int, message: str | None) -> str:
        if status in (401, 403):
            if not self.api_key:
                return f"the model server wants an API key ({status}): set LLM_API_KEY"
            # No message: some servers echo part of the key back in it.
            return f"the model server refused the API key ({status})"
        if status == 429:
            what = "rate limited"
        elif status == 404:
            what = "not found: check LLM_BASE_URL and LLM_MODEL"
        elif status >= 500:
            what = "the server failed"
        else:
            try:
                what = HTTPStatus(status).phrase.lower()
            except ValueError:
                what = "unexpected status"
        reason = f"the model server answered {status} ({what})"
        return f"{reason}: {message}" if message else reason

    def _transport_reason(self, error: httpx.HTTPError, stream: _StreamReading) -> str:
        seconds = f"{self.timeout_seconds:g}"
        if isinstance(error, httpx.ConnectTimeout):
            return f"could not connect to the model server within {seconds} s"
        if isinstance(error, httpx.ConnectError):
            return connect_reason(error)
        if isinstance(error, httpx.ReadTimeout):
            return self._stall_reason()
        if isinstance(error, httpx.TimeoutException):
            return f"the model server did not take the request within {seconds} s"
        if isinstance(error, httpx.UnsupportedProtocol):
            return "LLM_BASE_URL is not an http:// or https:// URL"
        if isinstance(error, httpx.RemoteProtocolError | httpx.ReadError):
            if stream.started:
                return f"{ENDED_EARLY} (the connection broke)"
            return "the model server closed the connection without answering"
        if isinstance(error, httpx.DecodingError):
            return "the model server sent data that could not be decoded"
        return "the connection to the model server failed"

    def _stall_reason(self) -> str:
        return f"no data from the model for {self.timeout_seconds:g} s"

    def _safe(self, message: str | None, limit: int = MESSAGE_CHARS) -> str:
        """``message`` on one line, without the API key, at most ``limit`` characters."""
        if not message:
            return ""
        if self.api_key:
            message = message.replace(self.api_key, "***")
        message = re.sub(r"[\s\x00-\x1f\x7f]+", " ", message).strip()
        return message if len(message) <= limit else message[: limit - 1] + "…"


class _StreamReading:
    """What one response's stream has said so far."""

    def __init__(self) -> None:
        self.started = False  # the response headers arrived
        self.model_named = False
        self.finished = False  # a choice had a finish_reason
        self.done = False  # [DONE]

    def read(self, event: ServerSentEvent, safe) -> Chunk | None:
        """The chunk an event carries (None for one with nothing to yield, and [DONE])."""
        data = event.data.strip()
        if event.event == "error":
            try:
                message = error_message(json.loads(data))
            except ValueError:
                message = data
            raise UpstreamError(reported_error(safe(message)))
        if data == "[DONE]":
            self.done = True
            return None
        if not data:
            return None
        try:
            payload = json.loads(data)
        except ValueError:
            raise UpstreamError(MALFORMED) from None
        if not isinstance(payload, dict):
            raise UpstreamError(MALFORMED)
        if payload.get("error"):
            raise UpstreamError(reported_error(safe(error_message(payload))))
        text, finish_reason = _first_choice(payload.get("choices"))
        if finish_reason:
            self.finished = True
        model = None
        if not self.model_named and isinstance(payload.get("model"), str) and payload["model"]:
            model = payload["model"]
            self.model_named = True
        usage = usage_of(payload, final=bool(finish_reason) or payload.get("choices") == [])
        if not (text or finish_reason or usage or model):
            return None
        return Chunk(text=text, finish_reason=finish_reason, usage=usage, model=model)


def _unanswered(error: httpx.HTTPError, stream: _StreamReading) -> bool:
    """The connection broke before the response began: the request can be sent again."""
    broken = httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError
    return not stream.started and isinstance(error, broken)


def _first_choice(choices: object) -> tuple[str, str | None]:
    """The text and finish_reason of ``choices[0]`` (we ask for one answer)."""
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return "", None
    choice = choices[0]
    delta = choice.get("delta")
    content = delta.get("content") if isinstance(delta, dict) else None
    finish_reason = choice.get("finish_reason")
    return (
        content if isinstance(content, str) else "",
        finish_reason if isinstance(finish_reason, str) and finish_reason else None,
    )


def usage_of(payload: dict, *, final: bool) -> Usage | None:
    """Usage from ``usage`` (OpenAI and most servers) or, in a final chunk, ``timings``.

    llama.cpp's ``timings`` count prompt tokens read from its cache apart (``cache_n``).
    """
    usage = payload.get("usage")
    if isinstance(usage, dict):
        prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
        if _is_count(prompt) and _is_count(completion):
            return Usage(prompt, completion)
    timings = payload.get("timings")
    if final and isinstance(timings, dict):
        prompt, cached = timings.get("prompt_n"), timings.get("cache_n", 0)
        completion = timings.get("predicted_n")
        if _is_count(prompt) and _is_count(cached) and _is_count(completion):
            return Usage(prompt + cached, completion)
    return None


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def error_message(payload: object) -> str | None:
    """The message in an error payload, in the shapes servers use.

    ``{"error": {"message": ...}}`` (OpenAI, vLLM), ``{"error": "..."}`` (Ollama),
    ``{"message": ...}``, ``{"detail": ...}`` (FastAPI-based servers).
    """
    if isinstance(payload, str):
        return payload or None
    if not isinstance(payload, dict):
        return None
    for key in ("error", "message", "detail"):
        value = payload.get(key)
        if isinstance(value, str) and value.strip():
            return value
        if isinstance(value, dict) and (found := error_message(value)):
            return found
    return None


def reported_error(message: str | None) -> str:
    reason = "the model server reported an error"
    return f"{reason}: {message}" if message else reason


def connect_reason(error: httpx.ConnectError) -> str:
    """Say whether the name did not resolve or the server refused, from the error's causes."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, ConnectionRefusedError):
            return "the model server refused the connection"
        if isinstance(cause, socket.gaierror):
            return "the model server's host name could not be resolved"
        cause = cause.__cause__ or cause.__context__
    return "could not connect to the model server"
