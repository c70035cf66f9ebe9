"""Merge the processes' live samples into what the dashboard shows each second.

Pure functions and one small class with an injected clock, so the rules are tested without
servers: a process that stops publishing disappears after ``PROCESS_TTL_SECONDS``; only
the newest sample of each process is kept (latest value wins, whatever the reader's pace);
latency quantiles are interpolated from histogram bucket deltas, like Prometheus'
``histogram_quantile``, over every process' buckets merged.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

#: A process whose last sample is older than this is gone from the dashboard.
PROCESS_TTL_SECONDS = 3.5

#: Figures added up across processes for the total.
SUMMED = ("streams", "sockets", "delivered_per_s", "slow_closed", "resyncs", "errors")


def quantile(buckets: list[list], q: float) -> float | None:
    """Return the ``q`` quantile of cumulative ``[[upper_bound, count], ...]`` buckets.

    Linear interpolation inside the bucket that holds the rank (the lower bound of the
    first bucket is 0); a rank in the ``+Inf`` bucket returns the highest finite bound.
    None when the buckets hold no observation.
    """
    if not buckets:
        return None
    ordered = sorted((float(bound), count) for bound, count in buckets)
    total = ordered[-1][1]
    if total <= 0:
        return None
    rank = q * total
    lower_bound, lower_count = 0.0, 0
    for bound, count in ordered:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (
                count - lower_count
            )
        lower_bound, lower_count = bound, count
    return lower_bound


def merge_buckets(many: list[list[list]]) -> list[list]:
    """Add up cumulative buckets with the same bounds (every process has the same ones)."""
    merged: dict[str, int] = {}
    for buckets in many:
        for bound, count in buckets:
            merged[bound] = merged.get(bound, 0) + count
    return [[bound, count] for bound, count in merged.items()]


def milliseconds(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def worst(states: list[str]) -> str:
    """One health word for several processes: the worst of them."""
    for state in ("down", "unknown", "ok"):
        if state in states:
            return state
    return "off" if states else "unknown"


class Aggregator:
    """The newest sample of every live process; ``snapshot()`` is what one tick shows."""

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, ttl: float = PROCESS_TTL_SECONDS
    ) -> None:
        self.clock = clock
        self.ttl = ttl
        self._latest: dict[str, tuple[float, dict]] = {}

    def add(self, sample: dict) -> None:
        """Keep ``sample`` as its process' newest (the previous one is dropped)."""
        process = sample.get("process")
        if isinstance(process, str):
            self._latest[process] = (self.clock(), sample)

    def snapshot(self, now: float | None = None) -> dict:
        """The live processes (sorted by label) and their total, JSON-safe."""
        limit = self.clock() - self.ttl
        for process in [p for p, (seen, _) in self._latest.items() if seen < limit]:
            del self._latest[process]
        processes = [self._latest[p][1] for p in sorted(self._latest)]
        total: dict = {name: sum(s.get(name) or 0 for s in processes) for name in SUMMED}
        total["delivered_per_s"] = round(total["delivered_per_s"], 2)
        buckets = merge_buckets([s.get("buckets") or [] for s in processes])
        total["p50_ms"] = milliseconds(quantile(buckets, 0.5))
        total["p99_ms"] = milliseconds(quantile(buckets, 0.99))
        total["db"] = worst([s.get("db", "unknown") for s in processes])
        total["redis"] = worst([s.get("redis", "unknown") for s in processes])
        total["processes"] = len(processes)
        return {
            "t": round(time.time() if now is None else now, 3),
            "total": total,
            "processes": [{k: v for k, v in s.items() if k != "buckets"} for s in processes],
        }
