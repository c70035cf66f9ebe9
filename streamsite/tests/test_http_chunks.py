"""Chunks written straight to uvicorn's httptools connections, and when they are refused."""

import asyncio

import httpx
import pytest

from streamsite.http_chunks import ChunkWriter
from streamsite.server_send import SCOPE_KEY, ServerSendMiddleware, http_server_send
from streamsite.testing.live_server import uvicorn_in_this_process

BIG = b"x" * 65536


async def chunks_app(scope, receive, send):
    """Routes that each check the writer at one point of a response's life."""
    if scope["type"] != "http":
        return
    state = scope["state"]
    writer = ChunkWriter.for_this_request()
    path = scope["path"]
    if path == "/chunked":
        before = writer.writable()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"one,", "more_body": True})
        during = writer.writable()
        if during:  # between two ASGI chunks, as a parked stream's hub does
            writer.write(b"two,")
        else:
            await send({"type": "http.response.body", "body": b"two,", "more_body": True})
        await send({"type": "http.response.body", "body": b"three", "more_body": False})
        state["chunked"] = (before, during, writer.writable())
    elif path == "/sized":
        headers = [(b"content-length", b"5")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        state["sized"] = writer.writable()
        await send({"type": "http.response.body", "body": b"sized"})
    elif path == "/slow":
        # Write until the transport asks to pause (the client is not reading), then
        # report how much was written and wait for the client to read it all.
        await send({"type": "http.response.start", "status": 200, "headers": []})
        written = 0
        while writer.writable() and written < 4096:
            writer.write(BIG)
            written += 1
        state["paused_after"] = written
        await send({"type": "http.response.body", "body": b"end", "more_body": False})
    elif path == "/gone":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"hello", "more_body": True})
        while (await receive())["type"] != "http.disconnect":
            pass  # the request's (empty) body first
        state["after_disconnect"] = writer.writable()
    state["done"].set()


@pytest.fixture
async def server():
    """uvicorn serving ``chunks_app`` with the production command's HTTP protocol."""
    state: dict = {"done": asyncio.Event()}

    async def app(scope, receive, send):
        await chunks_app({**scope, "state": state}, receive, send)

    async with uvicorn_in_this_process(ServerSendMiddleware(app), http="httptools") as port:
        yield f"http://127.0.0.1:{port}", state


async def test_a_chunk_written_between_asgi_chunks_arrives_in_order(server):
    url, state = server
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{url}/chunked")
    assert response.text == "one,two,three"
    assert response.headers["transfer-encoding"] == "chunked"
    await state["done"].wait()
    assert state["chunked"] == (False, True, False)  # not before the start, nor after the end


async def test_a_response_with_a_content_length_is_not_written_to(server):
    url, state = server
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"{url}/sized")).text == "sized"
    await state["done"].wait()
    assert state["sized"] is False


async def test_a_head_request_is_not_written_to(server):
    url, state = server
    async with httpx.AsyncClient() as client:
        response = await client.head(f"{url}/chunked")
    assert response.content == b""
    await state["done"].wait()
    assert state["chunked"][1] is False


async def test_a_client_that_does_not_read_stops_the_writer_then_gets_everything(server):
    """Flow control: the transport asks to pause long before 4,096 chunks of 64 KB
    (256 MB) are written; what was written reaches the client intact."""
    url, state = server
    async with httpx.AsyncClient() as client, client.stream("GET", f"{url}/slow") as response:
        await asyncio.wait_for(_paused(state), 10)  # the server wrote while we did not read
        body = await response.aread()
    assert 0 < state["paused_after"] < 4096
    assert body == BIG * state["paused_after"] + b"end"


async def _paused(state) -> None:
    while "paused_after" not in state:  # noqa: ASYNC110 - set by the server task; bounded
        await asyncio.sleep(0.01)


async def test_a_disconnected_client_is_not_written_to(server):
    url, state = server
    async with httpx.AsyncClient() as client, client.stream("GET", f"{url}/gone") as response:
        async for chunk in response.aiter_raw():
            assert chunk == b"hello"
            break
    await asyncio.wait_for(state["done"].wait(), 10)
    assert state["after_disconnect"] is False


async def test_other_servers_get_no_writer():
    async def send(message):  # daphne, the test client: a plain callable
        pass

    seen = []

    async def app(scope, receive, send):
        seen.append(ChunkWriter.for_this_request())

    await ServerSendMiddleware(app)({"type": "http"}, None, send)
    await app({"type": "http"}, None, send)  # the middleware is absent
    assert seen == [None, None]


async def test_the_site_hands_http_and_websocket_scopes_the_servers_send():
    """Outermost, so the request id's wrapper (HTTP) is not what streams write through."""
    from streamsite.asgi import application

    assert isinstance(application, ServerSendMiddleware)
    seen = {}

    async def app(scope, receive, send):
        seen[scope["type"]] = (scope.get(SCOPE_KEY), http_server_send.get())

    async def send(message):
        pass

    middleware = ServerSendMiddleware(app)
    for kind in ("http", "websocket", "lifespan"):
        await middleware({"type": kind}, None, send)
    assert seen == {
        "http": (None, send),  # the scope is not copied: every stream keeps it
        "websocket": (send, None),
        "lifespan": (None, None),
    }
    assert http_server_send.get() is None  # reset after the request
