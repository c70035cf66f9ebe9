"""Where a notification to many users spends its time on a database with a long history.

The steady fan-out run (``bench.sse``) measures a publish from the service call to the
browsers; this measures the service call alone, statement by statement, so a slow one
can be named. It creates a database of its own (or reuses one given with ``--database``,
so a schema change can be tried on the same history), gives ``--users`` users
``--unread`` unread notifications each, then calls
``notifications.services.notifications_create_many`` for all of them ``--rate`` times a
second for ``--seconds``, through the real channel layer, and prints per minute:

- each statement's median and p99 (the counter upsert, the insert, the previous ids),
  the commit, and what is left (Python, the channel layer's publish after commit);
- PostgreSQL's side: CPU seconds its backend used per publish (from ``/proc``), WAL
  bytes and full-page images per publish, blocks read from outside shared buffers,
  buffers a backend had to write out itself to make room, and checkpoints and autovacuum
  runs that fell in the minute;
- for every publish slower than ``--slow-ms``, what PostgreSQL's backends waited on, the
  vacuums in progress and the kernel's dirty memory and I/O stalls while it ran
  (``bench/pg_watch.py``, sampled every 100 ms).

Raw per-publish figures go to ``bench/results/<stamp>-publish-cost.jsonl``. Example
(1,000 users with 10,000 unread each, 10 publishes a second for five minutes)::

    python -m bench.publish_cost --users 1000 --unread 10000 --rate 10 --seconds 300

``--keep`` leaves the database for another run with ``--database NAME``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from bench import data
from bench.pg_watch import PostgresWatch, describe, slow_calls
from bench.sse import prepare_run, redis_client, server_environment

RESULTS_DIR = Path(__file__).resolve().parent / "results"

#: Statement labels by how the statement starts (the service's own SQL, see
#: notifications/counters.py, services.py and selectors.py).
LABELS = (
    ("WITH latest", "counters"),
    ('INSERT INTO "notifications_notification"', "insert"),
    ("SELECT given.user_id", "previous"),
    ('SELECT "notifications_notification"."id"', "announcement"),
    ("LOCK TABLE", "lock"),
    ('UPDATE "notifications_unreadcounter"', "counters"),
)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--unread", type=int, default=10000, help="unread rows per user")
    parser.add_argument("--rate", type=float, default=10, help="publishes per second")
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--database", help="reuse this database (created if missing)")
    parser.add_argument("--keep", action="store_true", help="do not drop the database")
    parser.add_argument("--redis-db", type=int, default=9)
    parser.add_argument("--label", default="", help="added to the results file's name")
    parser.add_argument("--slow-ms", type=float, default=200, help="publishes to explain")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a PostgreSQL setting for the publishing session (backend_flush_after=256kB)",
    )
    parser.add_argument(
        "--no-settle",
        action="store_true",
        help="do not checkpoint and warm a new history (to see what a fresh load costs)",
    )
    return parser.parse_args(argv)


def label_of(sql: str) -> str:
    for start, label in LABELS:
        if sql.lstrip().startswith(start):
            return label
    return "other"


class Timings:
    """Time every statement and the commit of one publish (``connection.execute_wrapper``
    and the connection's ``_commit``)."""

    def __init__(self, connection) -> None:
        self.current: dict[str, float] = {}
        commit = connection._commit

        def timed_commit():
            started = time.perf_counter()
            try:
                return commit()
            finally:
                self.add("commit", time.perf_counter() - started)

        connection._commit = timed_commit

    def add(self, label: str, seconds: float) -> None:
        self.current[label] = self.current.get(label, 0.0) + seconds

    def __call__(self, execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.add(label_of(sql), time.perf_counter() - started)

    def take(self) -> dict[str, float]:
        taken, self.current = self.current, {}
        return taken


def backend_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a PostgreSQL backend on this machine."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


SERVER_STATS = """
SELECT (SELECT wal_bytes FROM pg_stat_wal),
       (SELECT wal_fpi FROM pg_stat_wal),
       (SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter),
       (SELECT COALESCE(SUM(heap_blks_read + idx_blks_read), 0) FROM pg_statio_user_tables),
       (SELECT COALESCE(SUM(autovacuum_count + autoanalyze_count), 0) FROM pg_stat_user_tables),
       (SELECT buffers_backend FROM pg_stat_bgwriter)
"""
STAT_NAMES = ("wal_bytes", "wal_fpi", "checkpoints", "blocks_read", "autovacuums", "evicted")


def server_stats(cursor) -> dict[str, float]:
    cursor.execute("SELECT pg_stat_clear_snapshot()")
    cursor.execute(SERVER_STATS)
    return dict(zip(STAT_NAMES, (float(v) for v in cursor.fetchone()), strict=True))


def prepare(args: argparse.Namespace) -> tuple[str, list[int]]:
    """Create (or reuse) the database with its users and history; return its name and
    the users' ids."""
    name = args.database or f"streamsite_publish_cost_{os.getpid()}"
    if not database_exists(name):
        data.create_database(name)
    url = f"postgres://postgres@127.0.0.1:5432/{name}"
    data.setup_django(server_environment(url, args.redis_db))
    from django.contrib.auth import get_user_model

    users = list(
        get_user_model()
        .objects.filter(username__startswith="cost")
        .order_by("id")
        .values_list("id", flat=True)
    )
    if len(users) < args.users:
        started = time.monotonic()
        users += data.create_users(args.users - len(users), prefix=f"cost{len(users):06d}-")
        total = args.users * args.unread

        def progress(done: int) -> None:
            seconds = time.monotonic() - started
            print(f"publish_cost: history {done:,} of {total:,} rows ({seconds:.0f}s)", flush=True)

        data.insert_unread_history(
            users[: args.users], args.unread, progress=progress, settle=not args.no_settle
        )
        data.rebuild_unread_counters()
    return name, users[: args.users]


def explain_slow(rows: list[dict], watch: PostgresWatch, slow_ms: float) -> list[str]:
    """A line per publish slower than ``slow_ms``: what the watch saw while it ran."""
    calls = [(row["started"], row["total"]) for row in rows]
    first = rows[0]["started"] if rows else 0
    return [
        f"publish_cost: slow publish at {slow['started'] - first:.1f}s ({slow['ms']:.0f} ms): "
        + slow["seen"]
        for slow in slow_calls(watch, calls, slow_ms / 1e3)
    ]


def idle_samples(watch: PostgresWatch, seconds: float = 2.0) -> list[dict]:
    """What the server does with nobody publishing, for ``seconds`` (a vacuum or a
    checkpoint already running shows here)."""
    time.sleep(seconds)
    return list(watch.samples)


def database_exists(name: str) -> bool:
    listed = subprocess.run(
        ["psql", *data.PG, "-Atc", "SELECT datname FROM pg_database"],
        check=True,
        capture_output=True,
        text=True,
    )
    return name in listed.stdout.split()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def summarise(rows: list[dict]) -> dict:
    """Medians and p99s in ms of one window's publishes, and the server's side per publish."""
    labels = sorted({label for row in rows for label in row["statements"]})
    out = {"publishes": len(rows)}
    for label in ["total", *labels, "rest"]:
        values = [row["statements"].get(label, 0.0) if label not in ("total", "rest")
                  else row[label] for row in rows]  # fmt: skip
        out[label] = {
            "p50": round(statistics.median(values) * 1e3, 2),
            "p99": round(percentile(values, 0.99) * 1e3, 2),
        }
    for name in ("backend_cpu", *STAT_NAMES):
        out[name] = round(sum(row[name] for row in rows), 3)
    return out


def report_line(minute: int, summary: dict) -> str:
    n = max(summary["publishes"], 1)
    parts = [f"min {minute}: {summary['publishes']} publishes"]
    for label, value in summary.items():
        if isinstance(value, dict):
            parts.append(f"{label} {value['p50']}/{value['p99']}")
    parts.append(f"pg cpu {1e3 * summary['backend_cpu'] / n:.1f} ms")
    parts.append(f"wal {summary['wal_bytes'] / n / 1024:.0f} KB")
    parts.append(f"fpi {summary['wal_fpi'] / n:.0f}")
    parts.append(f"reads {summary['blocks_read'] / n:.0f}")
    parts.append(f"checkpoints {summary['checkpoints']:.0f}")
    parts.append(f"autovacuums {summary['autovacuums']:.0f}")
    parts.append(f"backend writes {summary['evicted'] / n:.0f}")
    return "publish_cost: " + ", ".join(parts) + " (ms p50/p99; server per publish)"


def main(argv=None) -> int:
    args = parse_args(argv)
    prepare_run("publish_cost")
    redis_client(args.redis_db).flushdb()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    RESULTS_DIR.mkdir(exist_ok=True)
    suffix = f"-{args.label}" if args.label else ""
    path = RESULTS_DIR / f"{stamp}-publish-cost{suffix}.jsonl"
    name = None
    try:
        name, users = prepare(args)
        from django.db import connection

        from notifications import services

        with connection.cursor() as cursor:
            for setting in args.set:
                cursor.execute("SELECT set_config(%s, %s, false)", setting.split("=", 1))
            cursor.execute(
                "SELECT pg_backend_pid(), pg_size_pretty(pg_database_size(current_database()))"
            )
            pid, size = cursor.fetchone()
            cursor.execute("SELECT count(*) FROM notifications_notification")
            (rows_before,) = cursor.fetchone()
        print(f"publish_cost: database {name} ({size}, {rows_before:,} notifications)", flush=True)
        timings = Timings(connection)
        watch = PostgresWatch(f"postgresql://postgres@127.0.0.1:5432/{name}").start()
        print(f"publish_cost: while idle before publishing: {describe(idle_samples(watch))}")
        rows, window, minute = [], [], 0
        with open(path, "w") as file, connection.execute_wrapper(timings):
            options = {"kind": "options", **vars(args), "rows_before": rows_before}
            file.write(json.dumps(options) + "\n")
            t0 = time.monotonic()
            seq = 0
            while (due := t0 + seq / args.rate) < t0 + args.seconds:
                if (delay := due - time.monotonic()) > 0:
                    time.sleep(delay)
                with connection.cursor() as cursor:
                    before = server_stats(cursor)
                timings.take()
                cpu = backend_cpu_seconds(pid)
                started, started_at = time.perf_counter(), time.time()
                services.notifications_create_many(recipients=users, title=f"cost {seq}")
                total = time.perf_counter() - started
                statements = timings.take()
                with connection.cursor() as cursor:
                    after = server_stats(cursor)
                row = {
                    "seq": seq,
                    "started": started_at,
                    "ended": started_at + total,
                    "late": round(max(0.0, time.monotonic() - due - total), 4),
                    "total": total,
                    "statements": statements,
                    "rest": total - sum(statements.values()),
                    "backend_cpu": backend_cpu_seconds(pid) - cpu,
                    **{k: after[k] - before[k] for k in STAT_NAMES},
                }
                file.write(json.dumps(row) + "\n")
                window.append(row)
                rows.append(row)
                seq += 1
                if time.monotonic() - t0 >= 60 * (minute + 1):
                    print(report_line(minute, summarise(window)), flush=True)
                    minute, window = minute + 1, []
            if window:
                print(report_line(minute, summarise(window)), flush=True)
            overall = summarise(rows)
            file.write(json.dumps({"kind": "summary", **overall}) + "\n")
            watch.stop()
            for sample in watch.samples:
                file.write(json.dumps({"kind": "pg_sample", **sample}) + "\n")
        print(report_line(-1, overall).replace("min -1", "all"), flush=True)
        for line in explain_slow(rows, watch, args.slow_ms):
            print(line, flush=True)
        print(f"publish_cost: raw results in {path.relative_to(RESULTS_DIR.parent.parent)}")
    finally:
        data.close_django()
        if name and not args.keep and not args.database:
            data.drop_database(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
