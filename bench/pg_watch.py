"""What PostgreSQL and the kernel were doing while a benchmark's call stalled.

A publish that usually takes 25 ms took 2 s now and then in the minutes after a long
history was written, with no checkpoint or autovacuum *finished* in the window
(``pg_stat_user_tables`` counts a vacuum only when it ends). This samples, every
``interval`` seconds from a thread with its own connection:

- every non-idle backend of the server (``pg_stat_activity``: its type, wait event and
  the start of its query), autovacuum workers and the checkpointer included;
- vacuums in progress (``pg_stat_progress_vacuum``: table, phase, blocks scanned);
- the kernel's dirty and writeback memory (``/proc/meminfo``) and the time tasks stalled
  on I/O (``/proc/pressure/io``, microseconds, cumulative),

so that a slow call can be laid beside what was sampled during it (``samples_between``;
times are ``time.time()``, which the benchmarks' publishers stamp their calls with).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import psycopg

ACTIVITY = """
SELECT backend_type, COALESCE(state, ''), COALESCE(wait_event_type, ''),
       COALESCE(wait_event, ''), left(regexp_replace(query, '\\s+', ' ', 'g'), 60)
FROM pg_stat_activity
WHERE pid <> pg_backend_pid()
  AND (state IS NULL OR state NOT IN ('idle'))
  AND backend_type NOT IN ('logical replication launcher', 'autovacuum launcher')
"""
VACUUMS = """
SELECT relid::regclass::text, phase, heap_blks_scanned, heap_blks_total
FROM pg_stat_progress_vacuum
"""


def kernel_io() -> dict[str, int]:
    """Dirty and writeback kB, and the microseconds some task waited on I/O so far."""
    out = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("Dirty", "Writeback"):
            out[name.lower() + "_kb"] = int(value.split()[0])
    pressure = Path("/proc/pressure/io")
    if pressure.exists():
        some = pressure.read_text().splitlines()[0]
        out["io_stall_us"] = int(some.rsplit("total=", 1)[1])
    return out


class PostgresWatch:
    """Sample the server in a daemon thread until ``stop()``; ``samples`` holds dicts with
    ``t`` (``time.time()``), ``backends``, ``vacuums`` and the kernel's figures."""

    def __init__(self, dsn: str, interval: float = 0.1) -> None:
        self.dsn = dsn
        self.interval = interval
        self.samples: list[dict] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pg-watch", daemon=True)

    def start(self) -> PostgresWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as connection:
            while not self._stopping.wait(self.interval):
                backends = connection.execute(ACTIVITY).fetchall()
                vacuums = connection.execute(VACUUMS).fetchall()
                self.samples.append(
                    {
                        "t": time.time(),
                        "backends": [list(row) for row in backends],
                        "vacuums": [list(row) for row in vacuums],
                        **kernel_io(),
                    }
                )

    def samples_between(self, start: float, end: float) -> list[dict]:
        return [sample for sample in self.samples if start <= sample["t"] <= end]


def describe(samples: list[dict]) -> str:
    """One line for what a run of samples saw: each backend's waits counted, the vacuums,
    the most dirty memory and the I/O stall time across them."""
    if not samples:
        return "no samples"
    waits: dict[str, int] = {}
    for sample in samples:
        for backend_type, state, wait_type, wait, _query in sample["backends"]:
            key = f"{backend_type}:{wait_type or state}/{wait or '-'}"
            waits[key] = waits.get(key, 0) + 1
    vacuums = sorted({f"{table} {phase}" for s in samples for table, phase, *_ in s["vacuums"]})
    parts = [
        ", ".join(f"{key} x{count}" for key, count in sorted(waits.items(), key=lambda kv: -kv[1]))
        or "no active backend",
        f"vacuums: {'; '.join(vacuums) or 'none'}",
        f"dirty max {max(s.get('dirty_kb', 0) for s in samples) // 1024} MB",
        f"writeback max {max(s.get('writeback_kb', 0) for s in samples) // 1024} MB",
    ]
    if "io_stall_us" in samples[0]:
        stalled = samples[-1]["io_stall_us"] - samples[0]["io_stall_us"]
        parts.append(f"io stall {stalled / 1e3:.0f} ms")
    return "; ".join(parts)


def slow_calls(watch: PostgresWatch, calls, slow_seconds: float) -> list[dict]:
    """For each ``(started, seconds)`` call slower than ``slow_seconds``: when, how long,
    and what the watch saw while it ran."""
    return [
        {
            "started": started,
            "ms": round(seconds * 1e3, 1),
            "seen": describe(watch.samples_between(started - watch.interval, started + seconds)),
        }
        for started, seconds in calls
        if seconds >= slow_seconds
    ]
