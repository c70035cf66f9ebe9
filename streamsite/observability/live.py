"""Each process' figures, once a second, for the admin's live dashboard while it is open.

Nothing runs while nobody watches. Every process' hub is a member of ``WATCH_KEY``
(``listen()``: one group membership, no task); an open dashboard stream publishes a
"watch" there every ``WATCH_EVERY_SECONDS``, which starts (or keeps running) the sampler of
every process that hears it. The sampler publishes one sample a second to ``SAMPLES_KEY``
and stops ``WATCH_TTL_SECONDS`` after the last watch. So an idle site pays nothing, and a
watched one one small channel-layer message per process a second.

The figures come from the Prometheus metric objects of ``streamsite.observability.metrics``
(this process' own values: prometheus-client keeps them per process, also in its
multi-process mode, where ``/metrics`` sums the workers' files), so there is one set of
counters.
Database and Redis health are checked every ``HEALTH_EVERY_SECONDS``, not per sample.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import weakref

from django.db import connection

from streamsite.observability import metrics
from streamsite.observability.aggregate import milliseconds, quantile
from streamsite.streaming.db import db_call
from streamsite.streaming.hub import Subscription, event_message, get_hub
from streamsite.streaming.outage import CHANNEL_LAYER, report_failure
from streamsite.streaming.publish import apublish
from streamsite.streaming.redis import get_redis

logger = logging.getLogger(__name__)

#: The group every process' hub is in, to hear that a dashboard is open.
WATCH_KEY = "observability.live.watch"
#: The group the dashboards' streams are in, to receive every process' samples.
SAMPLES_KEY = "observability.live.samples"
SAMPLE_EVERY_SECONDS = 1.0
WATCH_EVERY_SECONDS = 2.0
#: A sampler stops this long after the last watch (a few missed watches are tolerated).
WATCH_TTL_SECONDS = 6.0
HEALTH_EVERY_SECONDS = 5.0
HEALTH_TIMEOUT_SECONDS = 2.0

#: Sample fields -> the metric objects they add up (over all labels).
SOURCES = {
    "streams": metrics.streams_open,
    "sockets": metrics.sockets_open,
    "delivered": metrics.events_delivered,
    "slow_closed": metrics.slow_clients_closed,
    "resyncs": metrics.resyncs,
    "errors": metrics.log_errors,
}


def process_label() -> str:
    """``host:pid``: which process a sample is from (bounded: one per process)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def read_metrics(sources=SOURCES, latency=metrics.delivery_latency) -> dict:
    """This process' current figures: each source summed over its labels, and the latency
    histogram's cumulative buckets (``{upper_bound: count}``)."""
    metrics.flush_tallies()
    figures = dict.fromkeys(sources, 0.0)
    for field, metric in sources.items():
        for family in metric.collect():
            for sample in family.samples:
                if not sample.name.endswith("_created"):  # a counter's creation time
                    figures[field] += sample.value
    buckets: dict[str, float] = {}
    for family in latency.collect():
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                bound = sample.labels["le"]
                buckets[bound] = buckets.get(bound, 0) + sample.value
    return {**figures, "buckets": buckets}


class Sampler:
    """One process' sampler: a sample a second while watched, health every few seconds."""

    def __init__(self, read=read_metrics, clock=time.monotonic) -> None:
        self.read = read
        self.clock = clock
        self.label = process_label()
        self.watched_until = 0.0
        self.db = "unknown"
        self.redis = "unknown"
        self._previous: tuple[float, dict] | None = None
        self._task: asyncio.Task | None = None

    def watched(self) -> None:
        """A dashboard is open somewhere: sample (on) for ``WATCH_TTL_SECONDS`` more."""
        self.watched_until = self.clock() + WATCH_TTL_SECONDS
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="live-sampler")

    def sample(self) -> dict:
        """This second's figures: gauges now, rates and quantiles since the previous sample."""
        now, figures = self.clock(), self.read()
        then, before = self._previous or (now, figures)
        self._previous = (now, figures)
        elapsed = max(now - then, 1e-9)
        delivered = figures["delivered"] - before["delivered"]
        buckets = [
            [bound, int(count - before["buckets"].get(bound, 0))]
            for bound, count in figures["buckets"].items()
        ]
        return {
            "process": self.label,
            "streams": int(figures.get("streams", 0)),
            "sockets": int(figures.get("sockets", 0)),
            "delivered_per_s": round(delivered / elapsed, 2) if now > then else 0.0,
            "p50_ms": milliseconds(quantile(buckets, 0.5)),
            "p99_ms": milliseconds(quantile(buckets, 0.99)),
            "buckets": buckets,
            "slow_closed": int(figures.get("slow_closed", 0)),
            "resyncs": int(figures.get("resyncs", 0)),
            "errors": int(figures.get("errors", 0)),
            "db": self.db,
            "redis": self.redis,
        }

    async def _run(self) -> None:
        health = asyncio.create_task(self._check_health_forever(), name="live-health")
        loop = asyncio.get_running_loop()
        tick = loop.time()
        try:
            while self.clock() < self.watched_until:
                try:
                    await apublish(SAMPLES_KEY, event_message(SAMPLES_KEY, self.sample()))
                except Exception as error:
                    report_failure(CHANNEL_LAYER, "live dashboard samples", error, logger)
                tick += SAMPLE_EVERY_SECONDS
                await asyncio.sleep(max(0.0, tick - loop.time()))
        finally:
            health.cancel()
            self._previous = None  # the next watch starts its rates afresh

    async def _check_health_forever(self) -> None:
        while True:
            self.db = await _check(db_call(_database_answers))
            client = get_redis()
            self.redis = "off" if client is None else await _check(client.ping())
            await asyncio.sleep(HEALTH_EVERY_SECONDS)


def _database_answers() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        return cursor.fetchone() == (1,)


async def _check(call) -> str:
    """``ok`` if ``call`` answers truthily within ``HEALTH_TIMEOUT_SECONDS``, else ``down``."""
    try:
        async with asyncio.timeout(HEALTH_TIMEOUT_SECONDS):
            return "ok" if await call else "down"
    except asyncio.CancelledError:
        raise
    except Exception:
        return "down"


_samplers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Sampler] = (
    weakref.WeakKeyDictionary()
)


def get_sampler() -> Sampler:
    """The running loop's sampler (one per server process)."""
    loop = asyncio.get_running_loop()
    sampler = _samplers.get(loop)
    if sampler is None:
        sampler = _samplers[loop] = Sampler()
    return sampler


class _WatchListener(Subscription):
    """The hub's subscription to ``WATCH_KEY``: runs the sampler, buffers nothing.

    It leaves the hub when the hub ends its streams (shutdown, a runserver reload), so
    waiting for them to drain does not wait for it.
    """

    __slots__ = ("hub",)

    def __init__(self, hub, sampler: Sampler) -> None:
        super().__init__(WATCH_KEY, maxsize=1)
        self.hub = hub
        self.direct = lambda event: sampler.watched() or True

    def end(self) -> None:
        super().end()
        self.hub.remove(WATCH_KEY, self)


async def listen() -> None:
    """Have this process' sampler hear the dashboards' watches (idempotent, cheap).

    A member of ``WATCH_KEY`` for the hub's lifetime; the watch runs straight from the
    hub's dispatch (``direct``), so nothing waits and nothing is buffered.
    """
    hub = get_hub()
    if hub.local_subscriber_count(WATCH_KEY):
        return
    await hub.add(WATCH_KEY, _WatchListener(hub, get_sampler()))


_background: set[asyncio.Task] = set()


def listen_in_background() -> None:
    """``listen()`` without waiting (a server's startup hook): the layer may be slow."""
    task = asyncio.get_running_loop().create_task(listen(), name="live-listen")
    _background.add(task)
    task.add_done_callback(_listened)


def _listened(task: asyncio.Task) -> None:
    _background.discard(task)
    if not task.cancelled() and task.exception() is not None:
        # A dashboard opened in this process later listens again (``dashboard_stream``).
        report_failure(CHANNEL_LAYER, "live dashboard listening", task.exception(), logger)


async def awatch() -> None:
    """Tell every process' sampler that a dashboard is open (from the dashboard stream)."""
    await apublish(WATCH_KEY, event_message(WATCH_KEY, {"type": "live.watch"}))
