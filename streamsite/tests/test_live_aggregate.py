"""The live dashboard's merging rules, with an injected clock (streamsite.observability)."""

import json

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from streamsite.observability.aggregate import Aggregator, quantile
from streamsite.observability.live import Sampler, read_metrics


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def sample(process: str, **figures) -> dict:
    base = {"process": process, "streams": 0, "sockets": 0, "delivered_per_s": 0.0}
    base.update({"slow_closed": 0, "resyncs": 0, "errors": 0, "db": "ok", "redis": "off"})
    return {**base, "buckets": [], **figures}


def test_quantile_interpolates_inside_the_bucket_like_prometheus():
    buckets = [["0.01", 50], ["0.1", 100], ["+Inf", 100]]
    assert quantile(buckets, 0.5) == pytest.approx(0.01)
    assert quantile(buckets, 0.75) == pytest.approx(0.055)
    assert quantile([["0.01", 0], ["+Inf", 0]], 0.5) is None
    assert quantile([["0.01", 0], ["+Inf", 10]], 0.99) == 0.01  # beyond the last bound


def test_a_process_that_stops_publishing_disappears_within_the_ttl():
    clock = Clock()
    aggregator = Aggregator(clock, ttl=3.5)
    aggregator.add(sample("a:1", streams=2))
    aggregator.add(sample("b:2", streams=3))
    assert aggregator.snapshot()["total"]["streams"] == 5
    clock.now += 2
    aggregator.add(sample("a:1", streams=4))  # b:2 went quiet
    clock.now += 2
    snapshot = aggregator.snapshot()
    assert [p["process"] for p in snapshot["processes"]] == ["a:1"]
    assert snapshot["total"]["streams"] == 4 and snapshot["total"]["processes"] == 1


def test_latest_value_wins_for_a_slow_reader():
    """Samples arriving while nobody reads replace each other: one per process, the newest."""
    aggregator = Aggregator(Clock())
    for n in range(1000):
        aggregator.add(sample("a:1", streams=n))
    snapshot = aggregator.snapshot()
    assert len(snapshot["processes"]) == 1 and snapshot["total"]["streams"] == 999
    assert len(aggregator._latest) == 1


def test_the_total_merges_the_processes_buckets_and_health():
    aggregator = Aggregator(Clock())
    aggregator.add(sample("a:1", buckets=[["0.01", 10], ["+Inf", 10]], redis="ok"))
    aggregator.add(sample("b:2", buckets=[["0.01", 0], ["0.1", 10], ["+Inf", 10]], redis="down"))
    total = aggregator.snapshot()["total"]
    assert total["p50_ms"] == pytest.approx(10.0)
    assert 90 < total["p99_ms"] <= 100
    assert (total["db"], total["redis"]) == ("ok", "down")
    json.dumps(aggregator.snapshot(), allow_nan=False)  # JSON-safe, buckets left out


def test_the_sampler_reads_the_metric_objects_and_turns_counters_into_rates():
    registry = CollectorRegistry()
    streams = Gauge("streamsite_streams_open", "", ["app"], registry=registry)
    delivered = Counter("streamsite_events_delivered_total", "", ["app", "type"], registry=registry)
    latency = Histogram(
        "streamsite_delivery_latency_seconds", "", ["app"], buckets=[0.01, 0.1], registry=registry
    )
    slow = Counter("streamsite_slow_clients_closed_total", "", ["app", "reason"], registry=registry)
    clock = Clock()
    sources = {"streams": streams, "delivered": delivered, "slow_closed": slow}
    sampler = Sampler(read=lambda: read_metrics(sources, latency), clock=clock)
    sampler.sample()  # the first one sets the baseline
    streams.labels("notifications").inc(3)
    streams.labels("chat").inc(1)
    for _ in range(4):
        delivered.labels("chat", "chat.message").inc()
        latency.labels("chat").observe(0.05)
    slow.labels("chat", "buffer").inc()
    clock.now += 2
    figures = sampler.sample()
    assert figures["streams"] == 4 and figures["delivered_per_s"] == 2.0
    assert figures["slow_closed"] == 1
    assert 10 < figures["p50_ms"] < 100
    clock.now += 1
    quiet = sampler.sample()  # nothing happened in this second
    assert quiet["delivered_per_s"] == 0 and quiet["p99_ms"] is None
    json.loads(json.dumps(quiet, allow_nan=False))
