"""The OpenAI-compatible provider against the fake upstream, over real HTTP."""

from __future__ import annotations

import asyncio
import base64
import socket
import time
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from assistant.testing.openai_stream import openai_events, openai_stream
from assistant.upstream.base import Chunk, UpstreamError, Usage
from assistant.upstream.openai_compat import OpenAICompatibleProvider

pytestmark = pytest.mark.usefixtures("close_upstream_clients")

MESSAGES = [{"role": "user", "content": "Say hello"}]
API_KEY = "sk-test-secret-0123456789"


def provider_for(upstream, *, api_key=API_KEY, timeout=5, base_url=None):
    return OpenAICompatibleProvider(
        base_url or upstream.base_url, api_key, "gpt-test", timeout, max_tokens=256
    )


async def collect(provider) -> list[Chunk]:
    return [chunk async for chunk in provider.stream_reply(MESSAGES)]


async def collect_until_error(provider) -> tuple[list[Chunk], UpstreamError]:
    """The chunks yielded before the stream raised, and the error (which it must raise)."""
    chunks = []
    with pytest.raises(UpstreamError) as raised:
        async for chunk in provider.stream_reply(MESSAGES):
            chunks.append(chunk)
    return chunks, raised.value


def text_of(chunks: list[Chunk]) -> str:
    return "".join(chunk.text for chunk in chunks)


def last_usage(chunks: list[Chunk]) -> Usage | None:
    usages = [chunk.usage for chunk in chunks if chunk.usage is not None]
    return usages[-1] if usages else None


def pieces(data: bytes, cuts, delay: float = 0.0) -> list[dict]:
    """``data`` cut at the byte offsets ``cuts``, as fake-upstream chunks."""
    bounds = [0, *sorted(set(cuts)), len(data)]
    return [
        {"b64": base64.b64encode(data[start:end]).decode(), "delay": delay if start else 0}
        for start, end in pairwise(bounds)
        if end > start
    ]


async def test_streams_a_reply_in_order_with_usage_and_model(fake_upstream):
    """Text chunks in order, the model named once, the finish_reason, then the usage."""
    await fake_upstream.ascript(tokens=["Hel", "lo", ", wor", "ld"], prompt_tokens=11)

    chunks = await collect(provider_for(fake_upstream))

    assert [chunk.text for chunk in chunks if chunk.text] == ["Hel", "lo", ", wor", "ld"]
    assert [chunk.model for chunk in chunks if chunk.model] == ["fake-model"]
    assert chunks[0].model == "fake-model"
    assert [chunk.finish_reason for chunk in chunks if chunk.finish_reason] == ["stop"]
    assert last_usage(chunks) == Usage(11, 4)
    assert chunks[-1].usage == Usage(11, 4)
    [request] = await fake_upstream.arequests()
    assert request["path"] == "/v1/chat/completions"
    assert request["body"] == {
        "model": "gpt-test",
        "messages": MESSAGES,
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": 256,
    }
    assert request["auth"] is True
    assert request["auth_scheme"] == "Bearer"
    assert request["headers"]["accept"] == "text/event-stream"
    assert request["completed"] is True


async def test_sends_the_api_key_as_a_bearer_token(fake_upstream):
    await fake_upstream.ascripts([{"expect_api_key": API_KEY}, {"expect_api_key": API_KEY}])

    assert text_of(await collect(provider_for(fake_upstream))) == "Hello from the fake upstream."
    _, error = await collect_until_error(provider_for(fake_upstream, api_key="sk-wrong"))
    assert error.reason == "the model server refused the API key (401)"


async def test_sends_no_authorization_without_an_api_key(fake_upstream):
    await collect(provider_for(fake_upstream, api_key=""))

    [request] = await fake_upstream.arequests()
    assert request["auth"] is False


@pytest.mark.parametrize(
    ("placement", "expected"),
    [
        ("separate", Usage(9, 3)),
        ("with_finish", Usage(9, 3)),
        ("timings", Usage(9, 3)),
        ("none", None),
    ],
)
async def test_reads_usage_wherever_the_server_puts_it(fake_upstream, placement, expected):
    """A final chunk with empty choices (OpenAI), with the finish_reason, llama.cpp's
    timings, or no usage at all."""
    await fake_upstream.ascript(tokens=["a", "b", "c"], usage=placement, prompt_tokens=9)

    chunks = await collect(provider_for(fake_upstream))

    assert text_of(chunks) == "abc"
    assert last_usage(chunks) == expected
    assert [chunk.finish_reason for chunk in chunks if chunk.finish_reason] == ["stop"]


async def test_accepts_done_without_a_space(fake_upstream):
    """``data:[DONE]`` (huggingface_hub issue 4536), with no finish_reason before it."""
    await fake_upstream.ascript(tokens=["ok"], done="nospace", finish_reason=None)

    chunks = await collect(provider_for(fake_upstream))

    assert text_of(chunks) == "ok"
    assert last_usage(chunks) == Usage(7, 1)


async def test_reads_crlf_line_endings(fake_upstream):
    await fake_upstream.ascript(tokens=["line\none", " two\r\n"], crlf=True)

    chunks = await collect(provider_for(fake_upstream))

    assert text_of(chunks) == "line\none two\r\n"
    assert last_usage(chunks) == Usage(7, 2)


async def test_a_finish_reason_without_done_is_a_complete_answer(fake_upstream):
    await fake_upstream.ascript(tokens=["done"], done="none")

    chunks = await collect(provider_for(fake_upstream))

    assert text_of(chunks) == "done"
    assert last_usage(chunks) == Usage(7, 1)


async def test_ignores_comments_and_keepalives(fake_upstream):
    body = openai_stream(["a", "b"])
    start = body.index(b"data: ")
    await fake_upstream.ascript(
        chunks=[{"data": ": keepalive\n\n"}, {"data": ":\n\n"}, *pieces(body, [start + 3])]
    )

    assert text_of(await collect(provider_for(fake_upstream))) == "ab"


async def test_joins_a_multibyte_character_split_at_every_byte_offset(fake_upstream):
    """ollama-js PR 256, Fabric PR 2203: each network read is not a whole character."""
    body = openai_stream(["café ", "😀!"])
    for character in ("é", "😀"):
        encoded = character.encode()
        start = body.index(encoded)
        for offset in range(start, start + len(encoded) + 1):
            await fake_upstream.ascript(chunks=pieces(body, [offset], delay=0.02))

            chunks = await collect(provider_for(fake_upstream))

            assert text_of(chunks) == "café 😀!", f"split at byte {offset}"


@pytest.mark.parametrize("style", ["event", "data"])
async def test_an_error_mid_stream_keeps_what_came_before_then_raises(fake_upstream, style):
    await fake_upstream.ascript(
        tokens=["one", " two", " three"],
        error_after=2,
        error_style=style,
        error_message="model overloaded",
    )

    chunks, error = await collect_until_error(provider_for(fake_upstream))

    assert text_of(chunks) == "one two"
    assert error.reason == "the model server reported an error: model overloaded"


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (
            401,
            {"error": {"message": f"Incorrect API key provided: {API_KEY}"}},
            "the model server refused the API key (401)",
        ),
        (403, "forbidden", "the model server refused the API key (403)"),
        (
            429,
            {"error": {"message": "Rate limit reached for requests"}},
            "the model server answered 429 (rate limited): Rate limit reached for requests",
        ),
        (
            500,
            {"error": {"message": "The server had an error"}},
            "the model server answered 500 (the server failed): The server had an error",
        ),
        (
            502,
            "<html><body>Bad Gateway</body></html>",
            "the model server answered 502 (the server failed)",
        ),
        (
            404,
            {"error": {"message": "The model `gpt-test` does not exist"}},
            "the model server answered 404 (not found: check LLM_BASE_URL and LLM_MODEL): "
            "The model `gpt-test` does not exist",
        ),
        (
            400,
            {"detail": "max_tokens is too large"},
            "the model server answered 400 (bad request): max_tokens is too large",
        ),
    ],
)
async def test_an_error_status_raises_a_clear_reason(fake_upstream, status, body, reason):
    await fake_upstream.ascript(status=status, body=body)

    chunks, error = await collect_until_error(provider_for(fake_upstream))

    assert chunks == []
    assert error.reason == reason
    assert API_KEY not in str(error)


async def test_a_401_without_an_api_key_says_to_set_one(fake_upstream):
    await fake_upstream.ascript(status=401, body={"error": {"message": "no key"}})

    _, error = await collect_until_error(provider_for(fake_upstream, api_key=""))

    assert error.reason == "the model server wants an API key (401): set LLM_API_KEY"


async def test_a_long_error_message_is_cut_short(fake_upstream):
    await fake_upstream.ascript(status=500, body={"error": {"message": "x\n" * 5000}})

    _, error = await collect_until_error(provider_for(fake_upstream))

    assert len(error.reason) < 300
    assert "\n" not in error.reason


async def test_a_reply_that_is_not_an_event_stream_is_an_error(fake_upstream):
    await fake_upstream.ascript(body={"choices": [{"message": {"content": "hi"}}]})

    _, error = await collect_until_error(provider_for(fake_upstream))

    assert error.reason == "the model server did not answer with an event stream (application/json)"


async def test_malformed_json_is_an_error(fake_upstream):
    body = openai_stream(["fine"]).replace(b'"fine"', b'"fine', 1)
    await fake_upstream.ascript(chunks=pieces(body, []))

    _, error = await collect_until_error(provider_for(fake_upstream))

    assert error.reason == "the model server sent malformed data"


async def test_a_refused_connection_is_an_error(fake_upstream):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    provider = provider_for(fake_upstream, base_url=f"http://127.0.0.1:{port}/v1")

    _, error = await collect_until_error(provider)

    assert error.reason == "the model server refused the connection"


async def test_a_stall_past_the_timeout_is_an_error_and_hangs_up(fake_upstream):
    await fake_upstream.ascript(tokens=["first", " second"], stall_after=1, stall_seconds=None)

    started = time.monotonic()
    chunks, error = await collect_until_error(provider_for(fake_upstream, timeout=1))

    assert time.monotonic() - started >= 0.9
    assert text_of(chunks) == "first"
    assert error.reason == "no data from the model for 1 s"
    await fake_upstream.await_disconnected(0, timeout=5)


async def test_no_first_token_within_the_timeout_is_an_error(fake_upstream):
    """The headers came, then nothing: the first-token wait is timed too."""
    await fake_upstream.ascript(chunks=[{"stall": None}])

    chunks, error = await collect_until_error(provider_for(fake_upstream, timeout=1))

    assert chunks == []
    assert error.reason == "no data from the model for 1 s"


async def test_keepalive_comments_do_not_hide_a_stall(fake_upstream):
    role, first_token = openai_events(["a"])[:2]
    keepalives = [{"data": ": keepalive\n\n", "delay": 0.25}] * 12
    await fake_upstream.ascript(chunks=[*pieces(role + first_token, []), *keepalives])

    chunks, error = await collect_until_error(provider_for(fake_upstream, timeout=1))

    assert text_of(chunks) == "a"
    assert error.reason == "no data from the model for 1 s"


async def test_a_stream_that_ends_without_done_or_finish_reason_is_an_error(fake_upstream):
    await fake_upstream.ascript(tokens=["cut", " off"], end_early=True)

    chunks, error = await collect_until_error(provider_for(fake_upstream))

    assert text_of(chunks) == "cut off"
    assert error.reason == "the model's stream ended early"


async def test_a_finished_answer_leaves_its_connection_for_the_next(fake_upstream):
    """Read to the end after [DONE], the response's connection goes back to the pool: the
    next answer does not wait for a new one (time to first token)."""
    await fake_upstream.ascripts([{"tokens": ["a", "b"]}, {"tokens": ["c"]}])
    provider = provider_for(fake_upstream)
    assert text_of(await collect(provider)) == "ab"
    assert text_of(await collect(provider)) == "c"
    first, second = await fake_upstream.arequests()
    assert first["client_port"] is not None
    assert first["client_port"] == second["client_port"]


class HangingUpServer:
    """A raw HTTP server that closes its first ``hangups`` connections after reading the
    request, without a byte of response (a keep-alive connection closed by the server as
    the request went out looks the same to the client), then answers with ``body``."""

    def __init__(self, hangups: int, body: bytes) -> None:
        self.hangups, self.body, self.requests = hangups, body, 0

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/v1"

    async def __aexit__(self, *exc) -> None:
        self.server.close()
        await self.server.wait_closed()

    async def handle(self, reader, writer) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        await reader.readexactly(length)
        self.requests += 1
        if self.requests <= self.hangups:
            writer.close()
            return
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"connection: close\r\n\r\n" + self.body
        )
        await writer.drain()
        writer.close()


async def test_a_request_the_server_hangs_up_on_unanswered_is_sent_again(fake_upstream):
    """The keep-alive race (CI, 2026-12): nothing was answered, so nothing was lost."""
    upstream = HangingUpServer(hangups=1, body=openai_stream(["again"]))
    async with upstream as base_url:
        chunks = await collect(provider_for(fake_upstream, base_url=base_url))

    assert text_of(chunks) == "again"
    assert upstream.requests == 2


async def test_a_server_that_never_answers_fails_after_one_retry(fake_upstream):
    upstream = HangingUpServer(hangups=10, body=b"")
    async with upstream as base_url:
        chunks, error = await collect_until_error(provider_for(fake_upstream, base_url=base_url))

    assert chunks == []
    assert error.reason == "the model server closed the connection without answering"
    assert upstream.requests == 2


async def test_closing_early_disconnects_from_the_upstream(fake_upstream):
    """Stop must reach the upstream, so it stops generating (genkit issue 6308)."""
    tokens = [f" t{n}" for n in range(200)]
    await fake_upstream.ascript(tokens=tokens, token_delay=0.05)
    stream = provider_for(fake_upstream).stream_reply(MESSAGES)
    texts = []
    try:
        async for chunk in stream:
            if chunk.text:
                texts.append(chunk.text)
            if len(texts) == 2:
                break
    finally:
        closed_at = time.monotonic()
        await stream.aclose()
    record = await fake_upstream.await_disconnected(0, timeout=5)

    assert texts == [" t0", " t1"]
    assert record["completed"] is False
    # time.monotonic() is one clock for both processes (Linux). A correctness check:
    # the connection closed at once, not at some timeout.
    assert record["disconnected_at"] - closed_at < 1


async def test_cancelling_propagates_and_disconnects(fake_upstream):
    await fake_upstream.ascript(tokens=["a", "b"], stall_after=1, stall_seconds=None)
    started = asyncio.Event()

    async def consume():
        async for _chunk in provider_for(fake_upstream).stream_reply(MESSAGES):
            started.set()

    task = asyncio.create_task(consume())
    async with asyncio.timeout(5):
        await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await fake_upstream.await_disconnected(0, timeout=5)


# A token: any characters (multi-byte ones, newlines and CR included), but not surrogates,
# which UTF-8 cannot carry.
TOKEN_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=6)


@settings(max_examples=50, deadline=None)
@given(
    tokens=st.lists(TOKEN_TEXT, min_size=1, max_size=6),
    crlf=st.booleans(),
    done=st.sampled_from(["space", "nospace"]),
    data=st.data(),
)
async def test_a_stream_split_anywhere_reads_the_same(
    fake_upstream_server, tokens, crlf, done, data
):
    """Cut into pieces at any byte offsets, a valid stream yields the same text and usage."""
    body = openai_stream(tokens, crlf=crlf, done=done, prompt_tokens=5)
    cuts = data.draw(st.lists(st.integers(1, len(body) - 1), max_size=5), label="cuts")
    provider = provider_for(fake_upstream_server)
    await fake_upstream_server.areset()
    await fake_upstream_server.ascripts(
        [{"chunks": pieces(body, [])}, {"chunks": pieces(body, cuts, delay=0.005)}]
    )

    whole = await collect(provider)
    split = await collect(provider)

    assert text_of(whole) == "".join(tokens)
    assert last_usage(whole) == Usage(5, len(tokens))
    assert (text_of(split), last_usage(split)) == (text_of(whole), last_usage(whole))
