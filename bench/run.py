"""What one benchmark run owns, from its start to its clean end (used by ``bench.assistant``).

A results file (one JSON record a line, each printed as a progress line when it is made), a
directory for the servers' logs, a PostgreSQL database created for the run and dropped at
its end, and a Redis database emptied before and after. As a context manager it ends the
run however the block ends: Ctrl-C, SIGTERM (``prepare_run`` turns it into
KeyboardInterrupt) or an error stop every child process and keep the logs.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

from bench import data
from bench.machine import describe
from bench.processes import BASE_DIR, stop_all
from bench.sse import redis_client, server_environment

RESULTS_DIR = BASE_DIR / "bench" / "results"


class BenchRun:
    def __init__(self, program: str, *, suffix: str, database: str, redis_db: int, progress):
        self.program = program
        self.started = time.monotonic()
        self.stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        RESULTS_DIR.mkdir(exist_ok=True)
        self.results_path = RESULTS_DIR / f"{self.stamp}{suffix}.jsonl"
        self.log_dir = Path(tempfile.mkdtemp(prefix=f"streamsite-{program.replace('.', '-')}-"))
        self.database = database
        self.redis_db = redis_db
        self.redis = redis_client(redis_db)
        self.progress = progress
        self.records: list[dict] = []
        self.interrupted = False
        self.keep_logs = False
        #: Called first when the run ends (children that ``stop_all`` does not know).
        self.cleanups: list = []

    @property
    def relative_path(self) -> str:
        return str(self.results_path.relative_to(BASE_DIR))

    def record(self, item: dict) -> None:
        item = {"t": round(time.time(), 3), **item}
        self.records.append(item)
        with open(self.results_path, "a") as file:
            file.write(json.dumps(item) + "\n")
        print(self.progress(item), flush=True)

    def start(self, busy_percent: float, options: dict) -> dict[str, str]:
        """Create the database, empty Redis, set Django up; record the machine and the
        options. Return the servers' environment."""
        print(
            f"{self.program}: database {self.database}, Redis db {self.redis_db}, "
            f"logs in {self.log_dir}",
            flush=True,
        )
        env = server_environment(data.create_database(self.database), self.redis_db)
        self.redis.flushdb()
        data.setup_django(env)
        machine = describe(
            redis_version=self.redis.info("server").get("redis_version"),
            postgresql_version=data.versions()["postgresql"],
        )
        self.record({"kind": "machine", **machine, "busy_percent_at_start": round(busy_percent, 1)})
        self.record({"kind": "options", **options})
        return env

    def elapsed_minutes(self) -> float:
        return (time.monotonic() - self.started) / 60

    def __enter__(self) -> BenchRun:
        return self

    def __exit__(self, kind, error, tb) -> bool:
        if kind is KeyboardInterrupt:
            self.interrupted = True
            print(f"{self.program}: interrupted; stopping everything", file=sys.stderr)
        elif kind is not None and issubclass(kind, Exception):
            self.interrupted = True
            traceback.print_exception(kind, error, tb)
            print(f"{self.program}: failed; stopping everything (logs kept)", file=sys.stderr)
            self.keep_logs = True
        for cleanup in self.cleanups:
            with contextlib.suppress(Exception):
                cleanup()
        stop_all()
        try:
            data.close_django()
        except Exception as problem:  # the database may never have existed
            print(f"{self.program}: closing connections: {problem}", file=sys.stderr)
        data.drop_database(self.database)
        with contextlib.suppress(Exception):
            self.redis.flushdb()
        return kind is None or issubclass(kind, Exception | KeyboardInterrupt)

    def remove_logs(self) -> None:
        if self.keep_logs:
            print(f"{self.program}: server logs in {self.log_dir}")
        else:
            shutil.rmtree(self.log_dir, ignore_errors=True)
