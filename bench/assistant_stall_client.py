"""The load generator's side of the stalled-tab scenario: a tab that reads nothing, the
answers that stream meanwhile, and the tab's reading and resuming at the end.

The stalled tab is a plain non-blocking socket with a small receive buffer: it reads the
response head and the ``retry`` field (the server has subscribed by then) and then nothing
until ``drain``, which reads what the kernel and the server kept for it, checks whether the
server ended the stream (its buffer overflowed), and resumes from the last event id it got,
as ``EventSource`` would, until a given answer's ``done``.
"""

from __future__ import annotations

import asyncio
import socket
import time
import uuid

import httpx

from bench.assistant_sequential import queue_script, summary
from bench.assistant_streams import SSEStream, Tally, get_request, open_stream, post_request
from bench.rawhttp import Dechunker


async def ask_once(
    http: httpx.AsyncClient, command: dict, tally: Tally, viewer: int, prompt: str
) -> dict:
    """Queue the script, ask with a raw POST, read its stream to the end."""
    await queue_script(http, command["upstream"], command["script"])
    path = f"/assistant/{command['conversation']}/messages"
    payload = {"prompt": prompt, "client_id": str(uuid.uuid4())}
    request = post_request(path, command["port"], command["cookie"], payload)
    started = time.monotonic()
    stream = await open_stream(command["port"], request, tally, viewer)
    error = await stream.done
    answer = getattr(stream, "answer", None)
    view = tally.views.get((viewer, answer))
    return {
        "error": error,
        "answer": answer,
        "seconds": round(time.monotonic() - started, 2),
        "tokens": view.tokens if view else 0,
        "deltas": tally.deltas,
        "status": view.status if view else None,
        "crc": view.crc if view else None,
        "token_latency": summary(list(tally.latencies)),
        "errors": dict(tally.errors),
    }


async def flood(http: httpx.AsyncClient, command: dict) -> dict:
    """``asks`` questions of ``question_chars`` characters, ``concurrency`` at a time, in
    one conversation: every one is a ``turn`` event carrying the question to its viewers."""
    tally = Tally()
    gate = asyncio.Semaphore(command["concurrency"])
    filler = "Why does a stream that nobody reads cost the server nothing? " * 200
    results: list[dict] = []

    async def one(index: int) -> None:
        async with gate:
            prompt = f"bench flood {index}: " + filler[: command["question_chars"]]
            results.append(await ask_once(http, command, tally, -1 - index, prompt))

    started = time.monotonic()
    await asyncio.gather(*(one(i) for i in range(command["asks"])))
    return {
        "seconds": round(time.monotonic() - started, 2),
        "answers": sorted(r["answer"] for r in results if r["answer"]),
        "complete": sum(1 for r in results if r["status"] == "complete"),
        "errors": sum(1 for r in results if r["error"]),
    }


class StalledTab:
    """A tab that reads its stream's head, then nothing until ``drain``."""

    def __init__(self) -> None:
        self.sock: socket.socket | None = None
        self.head = b""

    async def open(self, command: dict) -> dict:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, command.get("rcvbuf", 4096))
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", command["port"]))
        path = f"/assistant/{command['conversation']}/stream"
        request = get_request(path, command["port"], command["cookie"], command["after"])
        await loop.sock_sendall(sock, request)
        async with asyncio.timeout(20):
            while b"retry:" not in self.head:
                self.head += await loop.sock_recv(sock, 4096)
        self.sock = sock
        return {"head_bytes": len(self.head), "local_port": sock.getsockname()[1]}

    async def drain(self, command: dict) -> dict:
        """Read until the server ends the stream or it goes quiet for ``quiet`` seconds,
        then resume from the last id until answer ``until``'s ``done``: the text of every
        answer, both parts together, must be the stored text."""
        loop, sock = asyncio.get_running_loop(), self.sock
        raw, closed = b"", False
        started = time.monotonic()
        while True:
            try:
                async with asyncio.timeout(command.get("quiet", 5)):
                    data = await loop.sock_recv(sock, 1 << 20)
            except TimeoutError:
                break
            if not data:
                closed = True
                break
            raw += data
        sock.close()
        dechunker = Dechunker()
        body = dechunker.feed((self.head + raw).partition(b"\r\n\r\n")[2])
        tally = Tally()
        tally.resume_view(0, command["after"])
        part = SSEStream(b"", tally, 0)
        part.body_received(body)
        held = {
            "bytes": len(raw),
            "read_seconds": round(time.monotonic() - started, 2),
            "events": tally.events,
            "tokens": tally.tokens,
            "ended_by_server": dechunker.ended or closed,
            "last_id": part.last_id,
        }
        answers_before = _complete(tally)
        if part.last_id:
            path = f"/assistant/{command['conversation']}/stream"
            request = get_request(path, command["port"], command["cookie"], part.last_id)
            stream = await open_stream(command["port"], request, tally, 0)
            until = command["until"]
            async with asyncio.timeout(120):
                while (view := tally.views.get((0, until))) is None or view.status is None:
                    tally.done_seen.clear()
                    await tally.done_seen.wait()
            stream.transport.close()
        return {
            "held": held,
            "answers_complete_before_resume": answers_before,
            "answers_complete": _complete(tally),
            "views": {
                str(answer): [view.tokens, view.crc, view.status, view.position]
                for (viewer, answer), view in tally.views.items()
                if viewer == 0
            },
            "last_id": part.last_id,
            "repeated": tally.repeated,
            "errors": dict(tally.errors),
        }


def _complete(tally: Tally) -> int:
    return sum(1 for view in tally.views.values() if view.status == "complete")
