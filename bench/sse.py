"""Benchmark streamsite's SSE notification stream against a naive baseline, side by side.

``python -m bench.sse [--quick] [...]`` (``make bench ARGS=...``) creates a database of its
own on the local PostgreSQL, uses a Redis database of its own, starts each server in turn
(one process: the production command, uvicorn, and daphne), holds streams of distinct
logged-in users from a separate load-generator process, publishes through the services
from separate publisher processes, and counts every delivery end to end. It prints the
tables, writes the raw records to ``bench/results/<time>.jsonl`` and the tables into
docs/benchmarks.md. Only 127.0.0.1 is contacted; every child is stopped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

from bench import data, report
from bench.machine import describe
from bench.processes import BASE_DIR, load_client, machine_busy_seconds, stop_all
from bench.scenario_export import export
from bench.scenarios import TWO_WORKERS, Bench, Config, fanout, idle, pg_connections, soak

SCENARIOS = ("fanout", "pg", "idle", "export")
CONFIGS = (
    "streamsite-uvicorn",
    "streamsite-daphne",
    "baseline-uvicorn",
    "baseline-daphne",
    "floor-starlette",
)
#: Run only when named: the production server with every metric update a no-op
#: (bench/nometrics), to measure what the metrics cost the delivery path (issue #11); the
#: production server with two workers (fan-out only); streamsite on granian and hypercorn.
ON_REQUEST = ("nometrics-uvicorn", TWO_WORKERS, "streamsite-granian", "streamsite-hypercorn")
RESULTS_DIR = BASE_DIR / "bench" / "results"
DOCS = BASE_DIR / "docs" / "benchmarks.md"

FULL = {
    "fanout_n": "1000,5000",
    "rates": "10:50,100:300",
    "idle_n": 10000,
    "pg_n": 1000,
    "export_rows": 1_000_000,
    "repeats": 3,
    "history_unread": 10_000,
    "steady_seconds": 300,
    "warmup_seconds": 10,
    "window_seconds": 60,
    "soak_seconds": 600,
}
QUICK = {
    "fanout_n": "100",
    "rates": "10:15,100:50",
    "idle_n": 200,
    "pg_n": 100,
    "export_rows": 30_000,
    "repeats": 2,
    "history_unread": 1000,
    "steady_seconds": 20,
    "warmup_seconds": 3,
    "window_seconds": 5,
    "soak_seconds": 30,
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.sse", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="small N, few publishes (~2 min)")
    parser.add_argument(
        "--scenarios", default=",".join(SCENARIOS), help="of: " + ",".join(SCENARIOS)
    )
    parser.add_argument(
        "--configs",
        help="of: " + ",".join(CONFIGS) + " (default: all; with --soak: the first); "
        "nometrics-uvicorn when named: streamsite with every metric update a no-op; "
        f"{TWO_WORKERS} when named: manage.py serve --workers 2 (fanout only); "
        "streamsite-granian, streamsite-hypercorn when named: on those servers",
    )
    parser.add_argument("--fanout-n", help="streams per fan-out measurement (full: 1000,5000)")
    parser.add_argument("--rates", help="RATE:COUNT publishes per fan-out (full: 10:50,100:300)")
    parser.add_argument("--idle-n", type=int, help="idle streams held (full: 10000)")
    parser.add_argument("--pg-n", type=int, help="streams for the PostgreSQL count (full: 1000)")
    parser.add_argument("--export-rows", type=int, help="rows exported (full: 1000000)")
    parser.add_argument("--repeats", type=int, help="runs of each cheap measurement (full: 3)")
    parser.add_argument(
        "--history-unread",
        type=int,
        help="unread notifications inserted for each of --history-users users before the "
        "runs, kept as history throughout (full: 10000; 0: none, and every run starts on an "
        "empty table)",
    )
    parser.add_argument(
        "--history-users", type=int, help="users given that history (default: the smallest N)"
    )
    parser.add_argument(
        "--steady-seconds",
        type=float,
        help="length of streamsite-uvicorn's run at the lowest rate and smallest N, after a "
        "warm-up (full: 300; 0: short repeated runs instead)",
    )
    parser.add_argument("--warmup-seconds", type=float, help="the warm-up (full: 10)")
    parser.add_argument(
        "--soak",
        action="store_true",
        help="instead of the scenarios: --soak-seconds at the lowest rate to the smallest N, "
        "with latency, server memory and open files per window",
    )
    parser.add_argument("--soak-seconds", type=float, help="the soak's length (full: 600)")
    parser.add_argument(
        "--window-seconds", type=float, help="steady-run latency reported per (full: 60)"
    )
    parser.add_argument(
        "--extra-publishers",
        type=int,
        default=2,
        help="publisher processes in the extra 100/s run of streamsite-uvicorn (1: none)",
    )
    parser.add_argument(
        "--no-layer-only",
        dest="layer_only",
        action="store_false",
        help="skip streamsite-uvicorn's extra run at the top rate that publishes the "
        "service's channel-layer messages without its database writes",
    )
    parser.add_argument(
        "--drain",
        type=float,
        default=8,
        help="seconds after the last publish before what is missing counts as lost",
    )
    parser.add_argument(
        "--max-publish-seconds", type=float, default=20, help="publishing stops after this long"
    )
    parser.add_argument("--connect-concurrency", type=int, default=100)
    parser.add_argument("--connect-timeout", type=float, default=300)
    parser.add_argument("--idle-cpu-seconds", type=float, default=3)
    parser.add_argument("--export-timeout", type=float, default=300)
    parser.add_argument("--redis-db", type=int, default=9, help="Redis database (not 0-4)")
    parser.add_argument("--no-docs", action="store_true", help="do not update docs/benchmarks.md")
    parser.add_argument("--keep-logs", action="store_true", help="keep the servers' logs")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="py-spy record the server during every publish run (collapsed stacks in "
        "bench/results/<time>-profiles/; needs py-spy and ptrace permission)",
    )
    args = parser.parse_args(argv)
    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.fanout_n = [int(n) for n in str(args.fanout_n).split(",") if n]
    args.rates = [
        (float(rate) if "." in rate else int(rate), int(count))
        for rate, count in (item.split(":") for item in args.rates.split(",") if item)
    ]
    args.scenarios = [s for s in args.scenarios.split(",") if s]
    if args.configs is None:
        args.configs = CONFIGS[0] if args.soak else ",".join(CONFIGS)
    args.configs = [c for c in args.configs.split(",") if c]
    for name, allowed in (("scenarios", SCENARIOS), ("configs", (*CONFIGS, *ON_REQUEST))):
        unknown = set(getattr(args, name)) - set(allowed)
        if unknown:
            parser.error(f"unknown {name}: {', '.join(sorted(unknown))}")
    if TWO_WORKERS in args.configs and (args.soak or set(args.scenarios) != {"fanout"}):
        parser.error(f"{TWO_WORKERS} runs the fanout scenario only (--scenarios fanout)")
    if args.redis_db in range(5):
        parser.error("--redis-db 0-4 are used by development and tests; pick another")
    if args.history_users is None:
        args.history_users = min(args.fanout_n, default=0)
    return args


def check_services() -> None:
    ready = subprocess.run(["pg_isready", "-h", "127.0.0.1", "-q"], check=False)
    if ready.returncode != 0:
        sys.exit("bench: PostgreSQL does not answer on 127.0.0.1:5432")


def machine_busy_percent(seconds: float = 1.0) -> float:
    """How busy all cores were over ``seconds``, in % of the whole machine."""
    busy_before, total_before = machine_busy_seconds()
    time.sleep(seconds)
    busy_after, total_after = machine_busy_seconds()
    return 100 * (busy_after - busy_before) / max(total_after - total_before, 1e-9)


def redis_client(db: int):
    import redis

    return redis.Redis(host="127.0.0.1", port=6379, db=db, socket_timeout=5)


def server_environment(database_url: str, redis_db: int) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "bench.settings",
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": "bench-" + os.urandom(24).hex(),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DATABASE_URL": database_url,
        "REDIS_URL": f"redis://127.0.0.1:6379/{redis_db}",
        "PYTHONUNBUFFERED": "1",
    }


def _terminate(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def prepare_run(program: str) -> float:
    """What every benchmark does first: stop cleanly on SIGTERM, allow thousands of open
    files, require PostgreSQL and Redis, and warn when the machine is already busy.
    Returns how busy it was (% of all cores)."""
    signal.signal(signal.SIGTERM, _terminate)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    check_services()
    busy = machine_busy_percent()
    if busy > 25:
        print(
            f"{program}: warning: the machine is already {busy:.0f}% busy (of "
            f"{os.cpu_count()} cores) with other work: figures will be lower and noisier",
            file=sys.stderr,
        )
    return busy


def main(argv=None) -> int:
    args = parse_args(argv)
    busy = prepare_run("bench")
    started = time.monotonic()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    RESULTS_DIR.mkdir(exist_ok=True)
    results_path = RESULTS_DIR / f"{stamp}{'-quick' if args.quick else ''}.jsonl"
    log_dir = Path(tempfile.mkdtemp(prefix="streamsite-bench-"))
    database = f"streamsite_bench_{os.getpid()}"
    layer_redis = redis_client(args.redis_db)
    records: list[dict] = []
    interrupted = False
    configs = [Config(*name.split("-")) for name in args.configs]

    def record(item: dict) -> None:
        item = {"t": round(time.time(), 3), **item}
        records.append(item)
        with open(results_path, "a") as file:
            file.write(json.dumps(item) + "\n")
        print(progress_line(item), flush=True)

    print(f"bench: database {database}, Redis db {args.redis_db}, logs in {log_dir}", flush=True)
    try:
        env = server_environment(data.create_database(database), args.redis_db)
        env["BENCH_FLOOR_CHANNEL"] = f"{database}-floor"  # Pub/sub ignores the db number.
        layer_redis.flushdb()
        data.setup_django(env)
        machine = describe(
            redis_version=layer_redis.info("server").get("redis_version"),
            postgresql_version=data.versions()["postgresql"],
        )
        record({"kind": "machine", **machine, "busy_percent_at_start": round(busy, 1)})
        record({"kind": "options", **{k: v for k, v in vars(args).items()}})
        users = max([*args.fanout_n, args.idle_n, args.pg_n, 20]) + 1
        setup_started = time.monotonic()
        user_ids = data.create_users(users)
        cookies = data.create_sessions(user_ids)
        print(f"bench: {users:,} users and sessions in {time.monotonic() - setup_started:.1f}s")
        if args.history_unread and args.history_users:
            history(args, user_ids[: args.history_users], record)
        client = load_client(env)
        bench = Bench(args, env, database, log_dir, user_ids[:-1], cookies[:-1], client, record)
        bench.keep_notifications = bool(args.history_unread and args.history_users)
        if args.profile:
            bench.profile_dir = results_path.with_suffix("").with_name(f"{stamp}-profiles")
            bench.profile_dir.mkdir(exist_ok=True)
        if args.soak:
            for config in configs:
                soak(bench, config)
        else:
            run_scenarios(bench, configs, export_user=(user_ids[-1], cookies[-1]))
        client.close()
    except KeyboardInterrupt:
        interrupted = True
        print("bench: interrupted; stopping everything", file=sys.stderr)
    except Exception:
        interrupted = True
        traceback.print_exc()
        print("bench: failed; stopping everything (server logs kept)", file=sys.stderr)
        args.keep_logs = True
    finally:
        stop_all()
        try:
            data.close_django()
        except Exception as error:  # the database may never have existed
            print(f"bench: closing connections: {error}", file=sys.stderr)
        data.drop_database(database)
        with contextlib.suppress(Exception):
            layer_redis.flushdb()
    elapsed = (time.monotonic() - started) / 60
    machine = next((r for r in records if r.get("kind") == "machine"), None)
    if machine is None:
        return 1
    options = {"quick": args.quick, "elapsed_minutes": round(elapsed, 1)}
    relative = results_path.relative_to(BASE_DIR)
    generated = report.render(records, machine, options, str(relative))
    print("\n" + generated)
    if interrupted:
        print(f"bench: stopped early: docs not updated; logs in {log_dir}", file=sys.stderr)
        return 1
    if not args.no_docs:
        report.update_docs(DOCS, generated)
        print(f"bench: tables written to {DOCS.relative_to(BASE_DIR)}")
    if not args.keep_logs:
        shutil.rmtree(log_dir, ignore_errors=True)
    print(f"bench: raw results in {relative}; {elapsed:.1f} min")
    return 0


def history(args: argparse.Namespace, user_ids: list[int], record) -> None:
    """Give every user of the steady run ``--history-unread`` unread notifications, then let
    the service rebuild its unread counters from the rows (when it keeps any)."""
    started = time.monotonic()
    total = len(user_ids) * args.history_unread

    def progress(done: int) -> None:
        seconds = time.monotonic() - started
        print(f"bench: history {done:,} of {total:,} rows ({seconds:.0f}s)", flush=True)

    data.insert_unread_history(user_ids, args.history_unread, progress=progress, settle=False)
    print("bench: history: analyse, checkpoint and warm the newest pages", flush=True)
    data.settle_table("notifications_notification")
    data.warm_newest_notifications(user_ids)
    inserted = time.monotonic() - started
    print("bench: history: rebuilding unread counters (if the service keeps any)", flush=True)
    rebuilt = data.rebuild_unread_counters()
    record(
        {
            "kind": "history",
            "users": len(user_ids),
            "unread_per_user": args.history_unread,
            "rows": total,
            "insert_seconds": round(inserted, 1),
            "counters_rebuilt": rebuilt,
            "rebuild_seconds": round(time.monotonic() - started - inserted, 1),
        }
    )


def run_scenarios(bench: Bench, configs: list[Config], export_user: tuple[int, str]) -> None:
    """Each selected scenario in turn; all configurations for one before the next.

    The floor has no database: it takes part in the fan-out and the idle broadcast only.
    """
    args = bench.args
    for scenario in SCENARIOS:
        if scenario not in args.scenarios:
            continue
        apps = [c for c in configs if c.app != "floor" or scenario in ("fanout", "idle")]
        if scenario == "export":
            export(bench, apps, *export_user)
            continue
        if scenario == "pg" and "fanout" in args.scenarios and args.pg_n in args.fanout_n:
            continue  # the fan-out's own connect phase at that N has counted them
        for config in apps:
            {"fanout": fanout, "idle": idle, "pg": pg_connections}[scenario](bench, config)


def progress_line(item: dict) -> str:
    kind = item.get("kind")
    if kind == "hold":
        return (
            f"  hold     {item['config']:<19} N={item['n']:<6} ready={item['ready']:<6} "
            f"{item['connects_per_second']} conn/s  {item['kb_per_stream']} KB/stream  "
            f"pg={sum(item['pg_connections'].values())}  threads={item['threads_after']}"
        )
    if kind == "history":
        return (
            f"  history  {item['rows']:,} unread rows in {item['insert_seconds']}s; counters "
            + (f"rebuilt in {item['rebuild_seconds']}s" if item["counters_rebuilt"] else "none")
        )
    if kind in ("fanout", "broadcast", "warmup", "soak"):
        latency = item["latency_ms"]
        windows = " ".join(f"{w['p99']:.0f}" for w in item.get("latency_windows") or [])
        return (
            f"  {kind:<8} {item['config']:<19} N={item['n']:<6} rate={item['rate']:<4} "
            f"mode={item['mode']} "
            f"pub/s={item['publishes_per_second']} published={item['published']} "
            f"p50={latency.get('p50')} p99={latency.get('p99')} max={latency.get('max')} ms "
            f"loss={item['loss_percent']}% deliveries/s={item['deliveries_per_second']} "
            f"server={item['cpu_percent']['server']}% client={item['cpu_percent']['client']}%"
            + (f" p99 per window: {windows} ms" if windows else "")
            + "".join(
                f"\n    slow service call at {call['at_seconds']}s ({call['ms']:.0f} ms): "
                f"{call['seen']}"
                for call in item.get("slow_service_calls") or []
            )
        )
    if kind == "export":
        return (
            f"  export   {item['config']:<19} {item['lines']:,} rows in {item['seconds']}s "
            f"({item['rows_per_second']} rows/s) +{item['rss_growth_mb']} MB"
        )
    return f"  {kind}"


if __name__ == "__main__":
    sys.exit(main())
