"""Probes the harness runs beside a scenario, each a thread sampling on its own.

- ``SendQueueProbe``: the kernel's send queue of one server connection (/proc/net/tcp):
  what a client that reads nothing leaves in kernel memory rather than in the server.
- ``PipelineProbe``: where a token waits between the upstream and the viewers: how old the
  newest token stored in each streaming answer is (its send stamp against now: the
  upstream-to-database part), and how many messages wait in Redis for each server's hub
  (the channel layer's queue, which every published delta crosses).
"""

from __future__ import annotations

import contextlib
import re
import threading
import time

from bench.assistant_sequential import summary

TAIL_TOKEN = re.compile(r"w\d+@(\d+\.\d{6}) $")


class SendQueueProbe:
    """The server side's kernel send queue of one connection, from /proc/net/tcp."""

    def __init__(self, server_port: int, interval: float = 0.25) -> None:
        self.local = f"0100007F:{server_port:04X}"
        self.remote: str | None = None
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)

    def watch(self, client_port: int) -> None:
        self.remote = f"0100007F:{client_port:04X}"
        self._thread.start()

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            with contextlib.suppress(OSError), open("/proc/net/tcp") as file:
                for line in file:
                    fields = line.split()
                    if fields[1] == self.local and fields[2] == self.remote:
                        self.samples.append((time.time(), int(fields[4].split(":")[0], 16)))
                        break

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def max_between(self, start: float, end: float) -> int | None:
        values = [v for t, v in self.samples if start <= t <= end]
        return max(values) if values else None


class PipelineProbe:
    """Every ``interval``: the stored lag of each streaming answer, the hubs' Redis queues.

    Runs in the harness with its own database connection (Django's, in this thread) and
    Redis client; a query and a SCAN per sample are noise next to the load measured.
    """

    def __init__(self, redis_client, interval: float = 0.2) -> None:
        self.redis = redis_client
        self.interval = interval
        self.lags: list[tuple[float, float]] = []  # (time.time(), seconds)
        self.queues: list[tuple[float, int]] = []  # (time.time(), messages waiting, all hubs)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PipelineProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        from django.db import connection

        try:
            while not self._stop.wait(self.interval):
                with connection.cursor() as cursor:
                    cursor.execute(
                        "SELECT right(text, 40) FROM assistant_answer "
                        "WHERE status = 'streaming' AND position > 0"
                    )
                    tails = cursor.fetchall()
                now, wall = time.monotonic(), time.time()
                for (tail,) in tails:
                    if match := TAIL_TOKEN.search(tail):
                        self.lags.append((wall, now - float(match[1])))
                waiting = 0
                for key in self.redis.scan_iter(match="asgi*specific.*", count=1000):
                    with contextlib.suppress(Exception):
                        if self.redis.type(key) == b"zset":
                            waiting += self.redis.zcard(key)
                self.queues.append((wall, waiting))
        finally:
            connection.close()

    def figures(self, start: float, end: float) -> dict:
        lags = [lag for t, lag in self.lags if start <= t <= end]
        queues = sorted(q for t, q in self.queues if start <= t <= end)
        return {
            "stored_lag": summary(lags),
            "hub_queue": {
                "samples": len(queues),
                "p50": queues[len(queues) // 2] if queues else None,
                "max": queues[-1] if queues else None,
            },
        }
