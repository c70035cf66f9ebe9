"""Every Prometheus metric streamsite reports, defined once so names stay stable.

Call sites import the objects from here and only ``inc``/``dec``/``observe`` them: the hot
paths (a delivery per client) build no strings; label values are constants or bounded names
(an app, an event type, a url name), never a user or room id.

Under ``manage.py serve`` each uvicorn worker is a process of its own: ``serve`` points
``PROMETHEUS_MULTIPROC_DIR`` at a fresh per-run directory before any worker imports
prometheus_client, so every metric is backed by a file there and ``/metrics`` sums the
workers (``streamsite.observability.exposition``). Gauges say how they combine:
``livesum`` counts only live workers, so a worker that died does not leave its open
streams behind. Without the directory (runserver, tests) this is the normal registry.
"""

import asyncio
import os

from prometheus_client import Counter, Gauge, Histogram

# prometheus_client refuses a PROMETHEUS_MULTIPROC_DIR that does not exist yet (``serve``
# creates or empties it only after settings, which import this, are loaded).
if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)

#: Latency buckets for delivery: a local fan-out is sub-millisecond, a Redis hop a few ms.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)

streams_open = Gauge(
    "streamsite_streams_open",
    "Open server-sent event streams.",
    ["app"],
    multiprocess_mode="livesum",
)
sockets_open = Gauge(
    "streamsite_sockets_open",
    "Open websockets.",
    ["app"],
    multiprocess_mode="livesum",
)
hub_subscriptions = Gauge(
    "streamsite_hub_subscriptions",
    "Subscriptions to the per-process hub (one per open stream or socket).",
    multiprocess_mode="livesum",
)
hub_group_memberships = Gauge(
    "streamsite_hub_group_memberships",
    "Channel-layer groups the per-process hubs are members of.",
    multiprocess_mode="livesum",
)
events_published = Counter(
    "streamsite_events_published",
    "Events sent to the channel layer by services.",
    ["app", "type"],
)
events_delivered = Counter(
    "streamsite_events_delivered",
    "Events written to a client connection.",
    ["app", "type"],
)
delivery_latency = Histogram(
    "streamsite_delivery_latency_seconds",
    "Time from publishing an event to writing it to a client connection.",
    ["app"],
    buckets=LATENCY_BUCKETS,
)
direct_writes = Counter(
    "streamsite_direct_writes",
    "Writes the hub made straight to a waiting stream's connection, without waking the "
    "stream (one per stream and hub step, however many events).",
    ["app"],
)
slow_clients_closed = Counter(
    "streamsite_slow_clients_closed",
    "Connections closed because the client read too slowly (SSE overflow, socket 1013).",
    ["app", "reason"],
)
resyncs = Counter(
    "streamsite_resyncs",
    "Times a stream told its client to resynchronise.",
    ["reason"],
)
heartbeat_gaps = Counter(
    "streamsite_heartbeat_gaps",
    "Heartbeats that did not come back through the channel layer in time.",
)
layer_send_failures = Counter(
    "streamsite_layer_send_failures",
    "Channel-layer sends or group operations that failed.",
)
db_call_queue_depth = Gauge(
    "streamsite_db_call_queue_depth",
    "Database calls waiting for the thread that runs them.",
    multiprocess_mode="livesum",
)
db_call_seconds = Histogram(
    "streamsite_db_call_seconds",
    "Time a database call took, waiting included.",
)
db_pool_in_use = Gauge(
    "streamsite_db_pool_in_use",
    "PostgreSQL connections checked out of the pool.",
    multiprocess_mode="livesum",
)
chat_sends_refused = Counter(
    "streamsite_chat_sends_refused",
    "Chat messages refused (rate limit, bad frame, no permission...).",
    ["reason"],
)
http_requests = Counter(
    "streamsite_http_requests",
    "HTTP requests by url name, method and status (not /healthz, /readyz, /metrics).",
    ["view", "method", "status"],
)
event_loop_tasks = Gauge(
    "streamsite_event_loop_tasks",
    "Tasks on the server's event loop, counted every 2 s (streamsite.observability.tasks).",
    multiprocess_mode="livesum",
)
log_errors = Counter(
    "streamsite_log_errors",
    "Log records at ERROR or above.",
)


class Tally:
    """Counts for a per-delivery hot path, kept as ints and added to ``counter`` later.

    Why: ``counter.labels(...).inc()`` takes a lock and, under ``serve``, writes the
    memory-mapped file: about 3 µs, a fifth of a chat delivery's server time (15 µs,
    docs/benchmarks.md). An int in a dict costs a tenth of a microsecond; the counter is
    brought up to date at most ``seconds`` later (one timer at a time), and at once by
    ``flush_tallies`` before anything reads it (``/metrics``, the Live page's sampler).
    Only the event loop's thread adds to it.
    """

    __slots__ = ("_children", "_counter", "_pending", "_seconds", "_timer", "_timer_loop")

    def __init__(self, counter: Counter, seconds: float = 1.0) -> None:
        self._counter = counter
        self._seconds = seconds
        self._children: dict[tuple, object] = {}
        self._pending: dict[tuple, int] = {}
        self._timer = None
        self._timer_loop = None

    def add(self, *labels: str) -> None:
        """Count one (``labels`` as the counter's label values, in order)."""
        pending = self._pending
        pending[labels] = pending.get(labels, 0) + 1
        # A timer whose loop closed (a test's loop) never runs: schedule on this one.
        if self._timer is None or self._timer_loop.is_closed():
            self._schedule()

    def _schedule(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop: nothing to batch with
            self.flush()
            return
        self._timer_loop = loop
        self._timer = loop.call_later(self._seconds, self.flush)

    def flush(self) -> None:
        """Add what was counted to the counter now."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, self._pending = self._pending, {}
        for labels, count in pending.items():
            child = self._children.get(labels)
            if child is None:
                child = self._children[labels] = self._counter.labels(*labels)
            child.inc(count)


#: ``delivered.add(app, type)`` for every event written to a client connection.
delivered = Tally(events_delivered)


#: ``written_directly.add(app)`` for every such write (``notifications.streams``).
written_directly = Tally(direct_writes)


def flush_tallies() -> None:
    """Bring the tallied counters up to date (before reading them)."""
    delivered.flush()
    written_directly.flush()
