"""Pre-built frames written straight to uvicorn's sans-I/O connections, and the fallbacks."""

import asyncio

import pytest
from websockets.asyncio.client import connect

from streamsite.testing.live_server import uvicorn_in_this_process
from streamsite.websocket import FrameWriter, daphne_close_code, text_frame

TEXT = 'héllo {"a": 1} ' + "x" * 300  # past 125 bytes: the extended length form


def test_text_frame_is_one_final_unmasked_text_frame():
    assert text_frame("hi") == b"\x81\x02hi"
    long = text_frame("é" * 100)  # 200 bytes
    assert long[:4] == b"\x81\x7e\x00\xc8" and long[4:] == ("é" * 100).encode()


async def frames_app(scope, receive, send):
    """Accept, report whether a writer was available, send TEXT through it, close after
    the client's close, then check the writer refuses a closed connection."""
    if scope["type"] != "websocket":
        return
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    writer = FrameWriter.for_send(send)
    await send({"type": "websocket.send", "text": f"writer: {writer is not None}"})
    if writer is None or not writer.write(text_frame(TEXT)):
        await send({"type": "websocket.send", "text": TEXT})
    message = await receive()
    assert message["type"] == "websocket.disconnect"
    scope["state"]["after_close"] = writer.write(text_frame("late")) if writer else None
    scope["state"]["done"].set()


@pytest.fixture
async def server():
    """uvicorn serving ``frames_app`` with the production command's WebSocket protocol."""
    state: dict = {"done": asyncio.Event()}

    async def app(scope, receive, send):
        await frames_app({**scope, "state": state}, receive, send)

    async with uvicorn_in_this_process(app, ws="websockets-sansio") as port:
        yield f"ws://127.0.0.1:{port}/", state


async def test_a_plain_connection_gets_the_prebuilt_frame(server):
    url, state = server
    async with connect(url, compression=None) as client:
        assert await client.recv() == "writer: True"
        assert await client.recv() == TEXT
    await state["done"].wait()
    assert state["after_close"] is False  # closed: the caller must use ASGI (which raises)


async def test_a_compressed_connection_falls_back_to_asgi(server):
    """Chromium offers permessage-deflate: its frames differ per connection, so no writer."""
    url, _state = server
    async with connect(url, compression="deflate") as client:
        assert await client.recv() == "writer: False"
        assert await client.recv() == TEXT


def test_other_servers_get_no_writer():
    async def send(message):  # daphne, the test client: a plain callable
        pass

    assert FrameWriter.for_send(send) is None


# Close codes under daphne -----------------------------------------------------------------


def test_daphne_sends_rfc_close_codes_it_refuses_as_their_4000_stand_ins():
    """autobahn's sendClose takes only 1000 and 3000-4999 (docs/protocol.md's mapping)."""
    assert [daphne_close_code(code) for code in (1009, 1011, 1012, 1013)] == [
        4009,
        4011,
        4012,
        4013,
    ]
    assert [daphne_close_code(code) for code in (1000, 3000, 4401, 4404)] == [
        1000,
        3000,
        4401,
        4404,
    ]
