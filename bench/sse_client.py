"""Load generator: many raw SSE connections held by one asyncio (uvloop) process.

``bench.sse`` drives it over stdin/stdout, one JSON object per line each way; it exits when
its stdin closes. Every connection is a logged-in user (a session cookie). Parsing is the
minimum, done per socket read: de-chunk the HTTP body, cut it at the last blank line, and
find the benchmark's notifications by their title, ``bench <run> <seq> <sent>``, which
carries the publisher's send time: latency is the receive time of the read minus that.

Commands (``cmd``): ``connect``, ``start``, ``progress``, ``stop``, ``close``,
``download``; see ``Client.handle``.
"""

from __future__ import annotations

import asyncio
import time
from array import array
from collections import Counter

from bench.client_process import (
    HISTOGRAM_MS,
    PERCENTILES,
    latency_windows,
    percentile,
    run_client,
)
from bench.rawhttp import Download, HTTPResponse, get_request

TITLE_PREFIX = b'"title":"bench '


class Recorder:
    """The deliveries of the current run, for every stream of this process."""

    def __init__(self) -> None:
        self.generation = 0
        self.mark: bytes | None = None
        self.count = 0
        self.window = 0.0
        self.reset()

    def reset(self) -> None:
        self.latencies = array("d")
        self.sent_times = array("d")  # the publish time of each latency, for ``windows``
        self.per_seq = array("I")
        self.per_second = array("I")
        self.deliveries = self.unique = self.duplicates = self.foreign = self.out_of_range = 0
        self.first = self.last = None
        self.t0 = time.time()
        self.closed_during_run = 0

    def start(self, run: str, count: int, window: float = 0) -> None:
        self.generation += 1
        self.window = window
        self.mark = TITLE_PREFIX + run.encode() + b" "
        self.count = count
        self.reset()
        self.per_seq = array("I", bytes(4 * count))

    def record(self, stream: Stream, text: bytes, now: float) -> None:
        """Record every notification of the current run in ``text`` (complete events)."""
        mark = self.mark
        if mark is None:
            self.foreign += text.count(TITLE_PREFIX)
            return
        if stream.generation != self.generation:
            stream.generation = self.generation
            stream.seen = bytearray(self.count)
        seen = stream.seen
        width = len(mark)
        position = text.find(mark)
        if position < 0:
            self.foreign += text.count(TITLE_PREFIX)
            return
        self.foreign += text.count(TITLE_PREFIX) - text.count(mark)
        while position >= 0:
            start = position + width
            end = text.index(b'"', start)
            seq_text, _, sent_text = text[start:end].partition(b" ")
            seq = int(seq_text)
            sent = float(sent_text)
            self.deliveries += 1
            self.latencies.append(now - sent)
            if self.window:
                self.sent_times.append(sent)
            if 0 <= seq < self.count:
                if seen[seq]:
                    self.duplicates += 1
                else:
                    seen[seq] = 1
                    self.unique += 1
                    self.per_seq[seq] += 1
            else:
                self.out_of_range += 1
            position = text.find(mark, end)
        if self.first is None:
            self.first = now
        self.last = now
        second = int(now - self.t0)
        if second >= 0:
            while len(self.per_second) <= second:
                self.per_second.append(0)
            self.per_second[second] += 1

    def summary(self) -> dict:
        latencies = sorted(self.latencies)
        histogram = [0] * (len(HISTOGRAM_MS) + 1)
        edge_index = 0
        for value in latencies:
            milliseconds = value * 1000
            while edge_index < len(HISTOGRAM_MS) and milliseconds > HISTOGRAM_MS[edge_index]:
                edge_index += 1
            histogram[edge_index] += 1
        return {
            "deliveries": self.deliveries,
            "unique": self.unique,
            "duplicates": self.duplicates,
            "foreign": self.foreign,
            "out_of_range": self.out_of_range,
            "first_receive": self.first,
            "last_receive": self.last,
            "latency_ms": {name: percentile(latencies, p) for name, p in PERCENTILES if latencies},
            "latency_mean_ms": 1000 * sum(latencies) / len(latencies) if latencies else None,
            "histogram_ms": {"edges": list(HISTOGRAM_MS), "counts": histogram},
            "per_seq": list(self.per_seq),
            "per_second": list(self.per_second),
            "closed_during_run": self.closed_during_run,
            "windows": latency_windows(self.sent_times, self.latencies, self.window),
        }


class Stream(HTTPResponse):
    """One SSE connection; ``done`` resolves when it is ready (first ``unread``) or failed."""

    def __init__(self, request: bytes, client: Client) -> None:
        super().__init__(request)
        self.client = client
        self.buffer = b""
        self.ready = False
        self.open = True
        self.generation = 0
        self.seen = bytearray()

    def head_received(self) -> None:
        if self.status != 200:
            self.finished(f"HTTP {self.status}")

    def body_received(self, data: bytes) -> None:
        now = time.time()
        buffer = self.buffer + data
        end = buffer.rfind(b"\n\n")
        if end < 0:
            self.buffer = buffer
            return
        text, self.buffer = buffer[: end + 2], buffer[end + 2 :]
        if not self.ready and b"event: unread" in text:
            self.ready = True
            if not self.done.done():
                self.done.set_result(None)
        if TITLE_PREFIX in text:
            self.client.recorder.record(self, text, now)

    def connection_lost(self, exc) -> None:
        if self.open:
            self.open = False
            self.client.stream_closed(self)
        super().connection_lost(exc)


class Client:
    """The streams of this process and the commands that drive them."""

    def __init__(self) -> None:
        self.recorder = Recorder()
        self.streams: list[Stream] = []
        self.closed_total = 0

    def stream_closed(self, stream: Stream) -> None:
        self.closed_total += 1
        if stream.ready and self.recorder.mark is not None:
            self.recorder.closed_during_run += 1

    async def handle(self, command: dict) -> dict:
        name = command["cmd"]
        if name == "connect":
            return await self.connect(**{k: v for k, v in command.items() if k != "cmd"})
        if name == "start":
            self.recorder.start(command["run"], command["count"], command.get("window", 0))
            return {"ok": True}
        if name == "progress":
            recorder = self.recorder
            return {
                "unique": recorder.unique,
                "deliveries": recorder.deliveries,
                "last_receive": recorder.last,
                "open": sum(1 for stream in self.streams if stream.open),
            }
        if name == "stop":
            self.recorder.mark = None
            return self.recorder.summary()
        if name == "close":
            return await self.close()
        if name == "download":
            return await self.download(**{k: v for k, v in command.items() if k != "cmd"})
        return {"error": f"unknown command {name!r}"}

    async def connect(
        self, *, port: int, path: str, cookies: list[str], concurrency: int, within: float
    ) -> dict:
        """Open a stream per cookie, ``concurrency`` at a time; wait until each is ready."""
        loop = asyncio.get_running_loop()
        gate = asyncio.Semaphore(concurrency)
        errors: Counter[str] = Counter()
        started = time.monotonic()
        deadline = started + within

        async def open_one(cookie: str) -> bool:
            async with gate:
                left = deadline - time.monotonic()
                if left <= 0:
                    errors["not started: deadline"] += 1
                    return False
                request = get_request(path, port, cookie, accept="text/event-stream")
                stream = Stream(request, self)
                try:
                    async with asyncio.timeout(min(left, 60)):
                        await loop.create_connection(lambda: stream, "127.0.0.1", port)
                        error = await stream.done
                except (OSError, TimeoutError) as exc:
                    error = f"{type(exc).__name__}: {exc}"[:120]
                    if stream.transport is not None:
                        stream.transport.close()
                self.streams.append(stream)
                if error is not None:
                    errors[error] += 1
                    return False
                return True

        results = await asyncio.gather(*(open_one(cookie) for cookie in cookies))
        seconds = time.monotonic() - started
        return {
            "ready": sum(results),
            "failed": len(results) - sum(results),
            "seconds": round(seconds, 3),
            "errors": dict(errors.most_common(5)),
            "open": sum(1 for stream in self.streams if stream.open),
        }

    async def close(self) -> dict:
        count = 0
        for stream in self.streams:
            if stream.transport is not None and stream.open:
                stream.open = False
                stream.transport.close()
                count += 1
        self.streams = []
        await asyncio.sleep(0.2)
        return {"closed": count}

    async def download(self, *, port: int, path: str, cookie: str, within: float) -> dict:
        """Fetch ``path`` once, counting what arrives (an NDJSON export)."""
        loop = asyncio.get_running_loop()
        request = get_request(path, port, cookie, accept="*/*", close=True)
        response = Download(request)
        started = time.monotonic()
        error = None
        try:
            async with asyncio.timeout(within):
                await loop.create_connection(lambda: response, "127.0.0.1", port)
                error = await response.done
        except TimeoutError:
            error = f"timeout after {within}s"
            if response.transport is not None:
                response.transport.close()
        seconds = time.monotonic() - started
        complete = response.dechunker is not None and response.dechunker.ended
        return {
            "status": response.status,
            "complete": complete,
            "failure": None if complete else error,
            "bytes": response.bytes,
            "lines": response.lines,
            "seconds": round(seconds, 3),
            "first_byte_seconds": round(response.first_byte - started, 3)
            if response.first_byte
            else None,
        }


def main() -> None:
    run_client(Client)


if __name__ == "__main__":
    main()
