"""What the load-generator processes share (``bench.sse_client``, ``bench.ws_client``).

Each runs as a child of the harness: it reads one JSON command a line on stdin, answers one
JSON line on stdout, and reports latencies with the same buckets and percentiles.
"""

import asyncio
import json
import math
import resource
import sys

import uvloop

#: Upper edges (ms) of the latency histogram kept in the raw results.
HISTOGRAM_MS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 60000)
PERCENTILES = (("min", 0), ("p50", 50), ("p90", 90), ("p99", 99), ("p999", 99.9), ("max", 100))


def percentile(ordered, p: float) -> float:
    """Nearest-rank percentile of sorted seconds, in milliseconds."""
    index = max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))
    return round(1000 * ordered[index], 3)


def latency_windows(sent_times, latencies, window: float) -> list[dict]:
    """Latency percentiles per ``window`` seconds of sending, by send time (the two arrays
    are parallel: the send time of each delivery, its latency in seconds)."""
    if not window or not sent_times:
        return []
    first = min(sent_times)
    buckets: dict[int, list[float]] = {}
    for sent, latency in zip(sent_times, latencies, strict=True):
        buckets.setdefault(int((sent - first) // window), []).append(latency)
    return [
        {
            "start_seconds": index * window,
            "deliveries": len(values),
            **{name: percentile(values, p) for name, p in PERCENTILES},
        }
        for index, values in sorted((i, sorted(v)) for i, v in buckets.items())
    ]


async def serve_commands(client) -> None:
    """Answer the harness' commands with ``client.handle`` until stdin closes."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=64 * 1024 * 1024)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        try:
            reply = await client.handle(json.loads(line))
        except Exception as exc:  # reported to the harness, which stops the benchmark
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
    await client.close()


def run_client(make_client) -> None:
    """Raise the open-files limit (thousands of sockets), then serve on uvloop."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    async def serve() -> None:
        await serve_commands(make_client())  # made inside the loop it runs on

    uvloop.run(serve())
