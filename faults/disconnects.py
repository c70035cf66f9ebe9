"""Scenario d of the fault campaign: many abrupt disconnects, then nothing left behind.

A client that vanishes (a laptop lid shut, a phone out of range, a tab killed) never says
goodbye: no WebSocket close frame, no end of an HTTP request, only a reset of the TCP
connection. Each client here opens a notification stream or a chat socket on a live
server, waits until the server has really taken it on (the stream's first bytes, the
socket's first frame: it is subscribed and counted), then resets the connection
(``SO_LINGER`` 0). Afterwards the server must be back where it started: file descriptors,
database connections, channel-layer group members, event-loop tasks, open streams, sockets
and hub subscriptions; its memory may not grow with the number of disconnects.

Raw sockets rather than an HTTP or WebSocket client: those say goodbye politely.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import socket
import struct
from dataclasses import dataclass
from pathlib import Path

#: How many clients connect at once (a wave); each wave is reset before the next opens.
WAVE = 200

#: The gauges of /metrics a leak would show in (streamsite_*).
GAUGES = (
    "streams_open",
    "sockets_open",
    "hub_subscriptions",
    "hub_group_memberships",
    "event_loop_tasks",
)


def _request(path: str, host: str, cookie: str, websocket: bool) -> bytes:
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}", f"Cookie: {cookie}"]
    if websocket:
        key = base64.b64encode(os.urandom(16)).decode()
        lines += [
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
            f"Origin: http://{host}",
        ]
    else:
        lines += ["Accept: text/event-stream"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def vanish(host: str, port: int, path: str, cookie: str, *, websocket: bool) -> bool:
    """Open a stream or socket, wait for the server's first bytes after the headers, reset.

    Returns whether the server took the connection on (a 200 stream or a 101 socket that
    sent its first frame); the connection is reset either way.
    """
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(_request(path, f"{host}:{port}", cookie, websocket))
        async with asyncio.timeout(30):
            head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        taken = status == (101 if websocket else 200)
        if taken:
            # The stream's retry line, or the socket's first frame (presence or history):
            # by then the server has subscribed the client.
            async with asyncio.timeout(30):
                await reader.read(1)
        return taken
    finally:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()


@dataclass
class Target:
    host: str
    port: int
    stream_path: str
    socket_path: str


async def vanish_many(target: Target, cookies: list[str], count: int) -> int:
    """``count`` abrupt disconnects, alternately streams and sockets, over ``cookies``'
    users, ``WAVE`` at a time. Returns how many the server had taken on."""
    taken = 0
    for start in range(0, count, WAVE):
        wave = [
            vanish(
                target.host,
                target.port,
                target.socket_path if n % 2 else target.stream_path,
                cookies[n % len(cookies)],
                websocket=bool(n % 2),
            )
            for n in range(start, min(start + WAVE, count))
        ]
        taken += sum(await asyncio.gather(*wave))
    return taken


#: Ports of the services whose client pools a server keeps (PostgreSQL, Redis).
SERVICE_PORTS = frozenset({5432, 6379})


def _tcp_remote_ports(pid: int) -> dict[str, int]:
    """Socket inode -> remote port of the process' TCP connections (/proc/<pid>/net)."""
    ports = {}
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            ports[fields[9]] = int(fields[2].rsplit(":", 1)[1], 16)
    return ports


def process_figures(pid: int) -> dict:
    """File descriptors and resident memory (KB) of a server process, from /proc.

    ``fds`` leaves out the connections to PostgreSQL and Redis: their pools open one more
    when a burst needs it and keep it (bounded by the pools' sizes, and the database's are
    counted apart), which is not a descriptor left behind by a client. ``fd_kinds`` says
    what every descriptor is, so one left behind says what it was.
    """
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kb = int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE).group(1))
    remote_ports = _tcp_remote_ports(pid)
    kinds: dict[str, int] = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:  # closed meanwhile
            continue
        kind, _, inode = target.partition(":[")  # "socket:[12345]", "pipe:[6789]"
        if not inode:
            kind = "file"
        elif kind == "socket" and remote_ports.get(inode.rstrip("]")) in SERVICE_PORTS:
            kind = "service pool"
        kinds[kind] = kinds.get(kind, 0) + 1
    fds = sum(count for kind, count in kinds.items() if kind != "service pool")
    return {"fds": fds, "fd_kinds": kinds, "rss_kb": rss_kb}


def gauges(metrics_text: str) -> dict[str, float]:
    """The leak-relevant gauges from a /metrics page (summed over label values)."""
    found = dict.fromkeys(GAUGES, 0.0)
    for line in metrics_text.splitlines():
        match = re.match(r"streamsite_(\w+?)(?:\{[^}]*\})? ([0-9.e+-]+)$", line)
        if match and match.group(1) in found:
            found[match.group(1)] += float(match.group(2))
    return found
