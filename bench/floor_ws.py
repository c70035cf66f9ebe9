"""The chat floor: a plain ``websockets`` broadcast server, the least a chat server can do.

``bench.chat`` starts it (configuration ``floor``, one process, uvloop) on a socket it bound
(``python -m bench.floor_ws --fd N``) and drives it with the same load generator, sockets,
senders and rates as streamsite, in the same run: streamsite's figures are reported as
ratios of these.

A room is the set of sockets connected to one path. A ``message.send`` frame is acked to
its sender (the load generator measures acks) and then, encoded once, sent to every socket
of the room with ``websockets.broadcast``, which writes the same frame to each connection
without a task per socket. No session, no database, no presence, no history: that is what
makes it a floor. ``websockets``' defaults otherwise (permessage-deflate when the client
offers it, a ping every 20 s), as a site built on it would run.
"""

from __future__ import annotations

import argparse
import itertools
import json
import socket
from collections import defaultdict
from http import HTTPStatus

import uvloop
import websockets
from websockets.asyncio.server import serve

rooms: dict[str, set] = defaultdict(set)
ids = itertools.count(1)
_to_json = json.JSONEncoder(separators=(",", ":")).encode


def process_request(connection, request):
    """Answer the harness' readiness probe over plain HTTP."""
    if request.path == "/bench/ready/":
        return connection.respond(HTTPStatus.OK, "ok\n")
    return None


async def handler(connection) -> None:
    path = connection.request.path
    room = rooms[path]
    room.add(connection)
    try:
        async for text in connection:
            try:
                message = json.loads(text)
            except ValueError:
                continue
            if not isinstance(message, dict) or message.get("type") != "message.send":
                continue
            client_id = str(message.get("client_id", ""))
            await connection.send(_to_json({"type": "ack", "client_id": client_id}))
            frame = _to_json(
                {
                    "type": "message",
                    "message": {
                        "id": next(ids),
                        "room": path,
                        "body": str(message.get("body", "")),
                        "client_id": client_id,
                    },
                }
            )
            websockets.broadcast(room, frame)
    finally:
        room.discard(connection)
        if not room:
            rooms.pop(path, None)


async def main(fd: int) -> None:
    listener = socket.socket(fileno=fd)
    async with serve(handler, sock=listener, process_request=process_request) as server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fd", type=int, required=True, help="an already-bound listening socket")
    uvloop.run(main(parser.parse_args().fd))
