"""Load generator for the chat benchmark: many raw WebSockets held by one uvloop process.

``bench.chat`` starts one or more of these (``python -m bench.ws_client``) and drives them
over stdin/stdout, one JSON object per line each way; a process exits when its stdin closes.

The WebSocket client is the minimum RFC 6455 needs, on ``asyncio.Protocol`` (no streams,
no tasks per socket): an HTTP/1.1 upgrade carrying the session cookie and an allowed
``Origin``, then unmasked server frames parsed per socket read (pings answered, close
codes recorded), and masked client frames written straight to the transport. By default
no extension is offered, so frames arrive uncompressed; ``connect`` with ``compression``
offers permessage-deflate exactly as Chromium does (``permessage-deflate;
client_max_window_bits``), and when the server accepts, frames with RSV1 are inflated and
sent frames deflated per RFC 7692 (zlib, raw deflate, the ``00 00 ff ff`` tail removed,
a new context per message where the server asked for no context takeover), so memory and
CPU are what a browser costs the server. The benchmark's messages are found
by their body, ``bench <run> <seq> <sent>``, which carries the sender's ``time.time()``
just before the frame was written: latency is the receive time of the socket read that
completed the frame, minus that.

Why not the ``websockets`` client: measured on this 2-core machine against a plain
``websockets`` broadcast server (1,000 sockets, ~27,000 frames/s), this client used 18 us
of CPU per frame received (50 % of a core; two thirds of it in uvloop's read path) and
``websockets.asyncio.client`` 37 us (97 %, saturated: a reader task, a queue and a
``recv()`` per frame). ``bench.chat`` runs two of these processes (``--clients``).

Commands (``cmd``): ``connect``, ``start``, ``progress``, ``stop``, ``close``, ``stats``;
see ``Client.handle``.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
import uuid
from array import array
from collections import Counter

from bench.client_process import (
    HISTOGRAM_MS,
    PERCENTILES,
    percentile,
    run_client,
)
from bench.ws_frames import (
    FIN,
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    RSV1,
    Deflate,
    client_frame,
    handshake,
    negotiated_extension,
)  # fmt: skip


class Recorder:
    """The deliveries of the current run, for every socket of this process."""

    def __init__(self) -> None:
        self.generation = 0
        self.mark: bytes | None = None
        self.count = 0
        self.window = 0.0
        self.reset()

    def reset(self) -> None:
        self.latencies = array("d")
        self.sent_times = array("d")  # the send time of each latency, when ``window``
        self.per_second = array("I")
        self.deliveries = self.unique = self.duplicates = self.out_of_range = 0
        self.first = self.last = None
        self.t0 = time.time()
        self.closed_during_run = 0
        self.sent = array("d")  # send time per seq sent by this process (0: not ours)
        self.sent_count = 0
        self.send_lag = array("d")  # how late each send was against its schedule
        self.acks = 0
        self.ack_latencies = array("d")  # sent -> ack, for the sends of this process
        self.errors: Counter[str] = Counter()
        self.error_samples: list[str] = []

    def start(self, run: str, count: int, window: float = 0) -> None:
        self.generation += 1
        self.window = window
        self.mark = b"bench " + run.encode() + b" "
        self.count = count
        self.reset()
        self.sent = array("d", bytes(8 * count))

    def summary(self, latencies_path: str) -> dict:
        latencies = sorted(self.latencies)
        histogram = [0] * (len(HISTOGRAM_MS) + 1)
        edge = 0
        for value in latencies:
            milliseconds = value * 1000
            while edge < len(HISTOGRAM_MS) and milliseconds > HISTOGRAM_MS[edge]:
                edge += 1
            histogram[edge] += 1
        # In delivery order, and with ``window`` each delivery's send time alongside.
        with open(latencies_path, "wb") as file:
            self.latencies.tofile(file)
        if self.window:
            with open(latencies_path + ".sent", "wb") as file:
                self.sent_times.tofile(file)
        lag = sorted(self.send_lag)
        acks = sorted(self.ack_latencies)
        return {
            "deliveries": self.deliveries,
            "unique": self.unique,
            "duplicates": self.duplicates,
            "out_of_range": self.out_of_range,
            "first_receive": self.first,
            "last_receive": self.last,
            "latency_ms": {name: percentile(latencies, p) for name, p in PERCENTILES if latencies},
            "latencies_file": latencies_path,
            "histogram_ms": {"edges": list(HISTOGRAM_MS), "counts": histogram},
            "per_second": list(self.per_second),
            "closed_during_run": self.closed_during_run,
            "sent": {str(seq): t for seq, t in enumerate(self.sent) if t},
            "sent_count": self.sent_count,
            "send_lag_ms": {name: percentile(lag, p) for name, p in PERCENTILES if lag},
            "acks": self.acks,
            "ack_latency_ms": {name: percentile(acks, p) for name, p in PERCENTILES if acks},
            "errors": dict(self.errors),
            "error_samples": self.error_samples,
        }


class Socket(asyncio.Protocol):
    """One WebSocket. ``done`` resolves (None or an error) when it is ready or has failed."""

    __slots__ = (
        "buffer", "client", "close_code", "deflate", "done", "fragments", "fragments_rsv1",
        "generation", "open", "ready", "ready_on", "request", "seen", "transport", "upgraded",
    )  # fmt: skip

    def __init__(self, client: Client, request: bytes, ready_on: str) -> None:
        self.client = client
        self.request = request
        self.ready_on = ready_on  # "upgrade" or a frame type, e.g. "history"
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.upgraded = False
        self.ready = False
        self.open = False
        self.close_code: int | None = None
        self.fragments: list[bytes] | None = None
        self.fragments_rsv1 = False
        self.deflate: Deflate | None = None  # permessage-deflate, once the server accepts it
        self.generation = 0
        self.seen = bytearray()
        self.done: asyncio.Future = asyncio.get_running_loop().create_future()

    # asyncio ---------------------------------------------------------------------------

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.open = True
        transport.write(self.request)

    def connection_lost(self, exc) -> None:
        if self.open:
            self.open = False
            self.client.socket_closed(self)
        self._finish(f"closed {self.close_code}" if self.close_code else "connection lost")

    def data_received(self, data: bytes) -> None:
        now = time.time()
        if not self.upgraded:
            data = self.buffer + data
            end = data.find(b"\r\n\r\n")
            if end < 0:
                self.buffer = data
                return
            status_line = data[: data.find(b"\r\n")]
            parts = status_line.split(b" ", 2)
            if len(parts) < 2 or parts[1] != b"101":
                self._finish(f"HTTP {parts[1].decode() if len(parts) > 1 else '?'}")
                self.transport.close()
                return
            self.upgraded = True
            extension = negotiated_extension(data[:end])
            if extension and extension.startswith("permessage-deflate"):
                self.deflate = Deflate(extension)
                self.client.compressed += 1
            self.buffer = b""
            data = data[end + 4 :]
            if self.ready_on == "upgrade":
                self._set_ready()
            if not data:
                return
        elif self.buffer:
            data = self.buffer + data
            self.buffer = b""
        position, size = 0, len(data)
        while size - position >= 2:
            b0 = data[position]
            length = data[position + 1] & 0x7F
            head = 2
            if length == 126:
                if size - position < 4:
                    break
                length = int.from_bytes(data[position + 2 : position + 4], "big")
                head = 4
            elif length == 127:
                if size - position < 10:
                    break
                length = int.from_bytes(data[position + 2 : position + 10], "big")
                head = 10
            end = position + head + length
            if end > size:
                break
            opcode = b0 & 0x0F
            payload = data[position + head : end]
            position = end
            if opcode == OP_TEXT and b0 & FIN:
                self._text(self.deflate.inflate(payload) if b0 & RSV1 else payload, now)
            elif opcode >= OP_CLOSE:
                self._control(opcode, payload)
            elif opcode in (OP_TEXT, OP_BINARY):  # first fragment
                self.fragments = [payload]
                self.fragments_rsv1 = bool(b0 & RSV1)
            elif opcode == OP_CONT and self.fragments is not None:
                self.fragments.append(payload)
                if b0 & FIN:
                    whole = b"".join(self.fragments)
                    self.fragments = None
                    if self.fragments_rsv1:
                        whole = self.deflate.inflate(whole)
                    self._text(whole, now)
        if position < size:
            self.buffer = data[position:]

    # frames ----------------------------------------------------------------------------

    def _text(self, payload: bytes, now: float) -> None:
        client = self.client
        recorder = client.recorder
        client.frames += 1
        mark = recorder.mark
        if mark is not None:
            found = payload.find(mark)
            if found >= 0 and b"history" not in payload[:24]:
                start = found + len(mark)
                end = payload.index(b'"', start)
                seq_text, _, sent_text = payload[start:end].partition(b" ")
                seq = int(seq_text)
                recorder.deliveries += 1
                sent = float(sent_text)
                recorder.latencies.append(now - sent)
                if recorder.window:
                    recorder.sent_times.append(sent)
                if self.generation != recorder.generation:
                    self.generation = recorder.generation
                    self.seen = bytearray(recorder.count)
                if 0 <= seq < recorder.count:
                    if self.seen[seq]:
                        recorder.duplicates += 1
                    else:
                        self.seen[seq] = 1
                        recorder.unique += 1
                else:
                    recorder.out_of_range += 1
                if recorder.first is None:
                    recorder.first = now
                recorder.last = now
                second = int(now - recorder.t0)
                per_second = recorder.per_second
                if second >= 0:
                    while len(per_second) <= second:
                        per_second.append(0)
                    per_second[second] += 1
                return
            head = payload[:32]
            if b'"ack"' in head:
                recorder.acks += 1
                found = payload.find(b'"client_id":')
                if found >= 0:
                    # The client id ends with the sequence number (see Client._send).
                    quote = payload.find(b'"', found + 12)
                    seq = int(payload[quote + 25 : quote + 37], 16)
                    if 0 <= seq < recorder.count and recorder.sent[seq]:
                        recorder.ack_latencies.append(now - recorder.sent[seq])
                return
            if b'"error"' in head:
                self._error(payload)
                return
        elif b'"error"' in payload[:32]:
            self._error(payload)
        if (
            not self.ready
            and self.ready_on != "upgrade"
            and f'"{self.ready_on}"'.encode() in payload[:32]
        ):
            self._set_ready()

    def _error(self, payload: bytes) -> None:
        recorder = self.client.recorder
        try:
            code = json.loads(payload).get("code", "?")
        except ValueError:
            code = "unparsable"
        recorder.errors[str(code)] += 1
        if len(recorder.error_samples) < 5:
            recorder.error_samples.append(payload[:300].decode(errors="replace"))

    def _control(self, opcode: int, payload: bytes) -> None:
        if opcode == OP_PING:
            self.transport.write(client_frame(OP_PONG, payload))
        elif opcode == OP_CLOSE:
            self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            self.client.close_codes[self.close_code] += 1
            if self.open:
                self.transport.write(client_frame(OP_CLOSE, payload[:2]))
                self.transport.close()
            self._finish(f"closed {self.close_code}")

    # helpers ---------------------------------------------------------------------------

    def _set_ready(self) -> None:
        self.ready = True
        self._finish(None)

    def _finish(self, error: str | None) -> None:
        if not self.done.done():
            self.done.set_result(error)

    def send_text(self, text: bytes) -> None:
        if self.deflate is not None:
            self.transport.write(client_frame(OP_TEXT, self.deflate.deflate(text), rsv1=True))
        else:
            self.transport.write(client_frame(OP_TEXT, text))


class Client:
    """The sockets of this process and the commands that drive them."""

    def __init__(self) -> None:
        self.recorder = Recorder()
        self.sockets: list[Socket] = []
        self.close_codes: Counter[int] = Counter()
        self.frames = 0
        self.compressed = 0  # sockets on which the server accepted permessage-deflate
        self.closed_total = 0
        self.sender: asyncio.Task | None = None

    def socket_closed(self, socket: Socket) -> None:
        self.closed_total += 1
        if socket.ready and self.recorder.mark is not None:
            self.recorder.closed_during_run += 1

    async def handle(self, command: dict) -> dict:
        name = command.pop("cmd")
        if name == "connect":
            return await self.connect(**command)
        if name == "start":
            return self.start(**command)
        if name == "progress":
            recorder = self.recorder
            return {
                "unique": recorder.unique,
                "deliveries": recorder.deliveries,
                "sent": recorder.sent_count,
                "sending": self.sender is not None and not self.sender.done(),
                "last_receive": recorder.last,
                "open": sum(1 for s in self.sockets if s.open),
            }
        if name == "stop":
            return await self.stop()
        if name == "close":
            return await self.close()
        if name == "stats":
            return {
                "open": sum(1 for s in self.sockets if s.open),
                "ready": sum(1 for s in self.sockets if s.ready and s.open),
                "frames": self.frames,
                "close_codes": {str(k): v for k, v in self.close_codes.items()},
            }
        return {"error": f"unknown command {name!r}"}

    async def connect(
        self,
        *,
        port: int,
        paths: list[str],
        cookies: list[str],
        concurrency: int,
        within: float,
        ready_on: str,
        compression: bool = False,
    ) -> dict:
        """Open a socket per (path, cookie), ``concurrency`` at a time; wait until ready."""
        loop = asyncio.get_running_loop()
        gate = asyncio.Semaphore(concurrency)
        errors: Counter[str] = Counter()
        started = time.monotonic()
        deadline = started + within
        first = len(self.sockets)

        async def open_one(path: str, cookie: str) -> bool:
            async with gate:
                left = deadline - time.monotonic()
                if left <= 0:
                    errors["not started: deadline"] += 1
                    return False
                request = handshake(path, port, cookie, compression=compression)
                socket = Socket(self, request, ready_on)
                try:
                    async with asyncio.timeout(min(left, 60)):
                        await loop.create_connection(lambda: socket, "127.0.0.1", port)
                        error = await socket.done
                except (OSError, TimeoutError) as exc:
                    error = f"{type(exc).__name__}: {exc}"[:120]
                    if socket.transport is not None:
                        socket.transport.close()
                self.sockets.append(socket)
                if error is not None:
                    errors[error] += 1
                    return False
                return True

        pairs = zip(paths, cookies, strict=True)
        compressed_before = self.compressed
        results = await asyncio.gather(*(open_one(p, c) for p, c in pairs))
        seconds = time.monotonic() - started
        return {
            "compressed": self.compressed - compressed_before,
            "ready": sum(results),
            "failed": len(results) - sum(results),
            "seconds": round(seconds, 3),
            "errors": dict(errors.most_common(5)),
            "first_index": first,
            "open": sum(1 for s in self.sockets if s.open),
        }

    def start(
        self,
        *,
        run: str,
        count: int,
        rate: float,
        t0: float,
        senders: dict[str, int],
        of: int,
        body_padding: int = 0,
        window: float = 0,
    ) -> dict:
        """Count run ``run``'s deliveries; send this process' share of its ``count`` messages.

        Message ``seq`` is sent at ``t0 + seq / rate`` (or as soon after as the loop can)
        by global sender ``seq % of``; ``senders`` maps the global senders this process owns
        to its socket indices.
        """
        self.recorder.start(run, count, window)
        mine = {int(g): self.sockets[i] for g, i in senders.items()}
        if mine:
            self.sender = asyncio.ensure_future(
                self._send(run, count, rate, t0, mine, of, "x" * body_padding)
            )
        return {"ok": True}

    async def _send(self, run, count, rate, t0, mine, of, padding) -> None:
        recorder = self.recorder
        seqs = [seq for seq in range(count) if seq % of in mine]
        prefix = (run.encode().hex() + "0" * 20)[:20]
        for seq in seqs:
            due = t0 + seq / rate
            delay = due - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            socket = mine[seq % of]
            if not socket.open:
                recorder.errors["sender closed"] += 1
                continue
            sent = time.time()
            body = f"bench {run} {seq} {sent!r}{padding}"
            # A UUID that names the run and ends with ``seq`` (12 hex digits): acks carry it.
            client_id = uuid.UUID(prefix + f"{seq:012x}")
            frame = f'{{"type":"message.send","client_id":"{client_id}","body":"{body}"}}'.encode()
            socket.send_text(frame)
            recorder.sent[seq] = sent
            recorder.sent_count += 1
            recorder.send_lag.append(max(0.0, sent - due))

    async def stop(self) -> dict:
        if self.sender is not None and not self.sender.done():
            self.sender.cancel()
        self.sender = None
        self.recorder.mark = None
        handle, path = tempfile.mkstemp(prefix="bench-latencies-", suffix=".bin")
        os.close(handle)
        return self.recorder.summary(path)

    async def close(self) -> dict:
        count = 0
        for socket in self.sockets:
            if socket.transport is not None and socket.open:
                socket.open = False
                socket.transport.close()
                count += 1
        self.sockets = []
        await asyncio.sleep(0.2)
        return {"closed": count}


def main() -> None:
    run_client(Client)


if __name__ == "__main__":
    main()
