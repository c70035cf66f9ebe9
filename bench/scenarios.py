"""What is measured: fan-out, idle streams, PostgreSQL connections (export: scenario_export).

Each function drives one server process at a time through ``Bench`` (the run's shared
state) and hands every measurement to ``bench.record`` as soon as it is made.
"""

from __future__ import annotations

import functools
import json
import secrets
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from bench import data
from bench.pg_watch import PostgresWatch, slow_calls
from bench.processes import (
    OTHER_ASGI_SERVERS,
    LineChild,
    Profiler,
    Sampler,
    Server,
    cpu_seconds,
    publisher,
    reset_peak_rss,
    status_kb,
    without_metrics,
)
from bench.report import PRODUCTION

#: streamsite with every metric update a no-op (``bench.processes.without_metrics``).
NOMETRICS = "nometrics"

#: Seconds a command to the load generator may take, beyond what it is asked to wait.
SLACK = 30
#: A fan-out run at ≤ 10/s, or a broadcast, is repeated (``--repeats``) only while one
#: takes less than this long.
CHEAP_SECONDS = 15


@dataclass(frozen=True)
class Config:
    """What serves the streams: ``app`` (streamsite, baseline, floor, or ``nometrics``:
    streamsite with every metric update a no-op, bench/nometrics) on ``server``."""

    app: str
    server: str

    @property
    def name(self) -> str:
        return f"{self.app}-{self.server}"

    @property
    def site(self) -> str:
        """The application served: ``nometrics`` is streamsite."""
        return "streamsite" if self.app == NOMETRICS else self.app

    @property
    def stream_path(self) -> str:
        return {"streamsite": "/notifications/stream/", "floor": "/stream/"}.get(
            self.site, "/bench/baseline/stream/"
        )

    @property
    def export_path(self) -> str:
        return (
            "/notifications/export.ndjson"
            if self.site == "streamsite"
            else "/bench/baseline/export.ndjson"
        )


@dataclass
class Bench:
    """The run's shared state: options, environment, users, the load generator, results."""

    args: object
    env: dict
    database: str
    log_dir: Path
    user_ids: list[int]
    cookies: list[str]
    client: LineChild
    record: object  # callable(dict)
    profile_dir: Path | None = None
    #: Notifications are history (``--history-unread``): kept between runs, not truncated.
    keep_notifications: bool = False

    def server(self, config: Config, label: str) -> Server:
        env = without_metrics(self.env) if config.app == NOMETRICS else self.env
        return Server(config.server, env, self.log_dir, f"{config.name}-{label}")

    def recipients_file(self, count: int) -> Path:
        path = self.log_dir / f"recipients-{count}.json"
        if not path.exists():
            path.write_text(json.dumps(self.user_ids[:count]))
        return path


def settle(pid: int | list[int], *, quiet_percent: float = 25, timeout: float = 20) -> None:
    """Wait (bounded) until the server's CPU use (its workers' together) falls below
    ``quiet_percent`` of a core."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = cpu_seconds(pid)
        time.sleep(0.5)
        if (cpu_seconds(pid) - before) * 200 < quiet_percent:
            return


def hold(bench: Bench, server: Server, config: Config, count: int, *, warm_up: bool) -> dict:
    """Open ``count`` streams of distinct users and keep them; measure what they cost."""
    args = bench.args
    if warm_up:  # imports, the hub, pools: not per-stream memory
        connect(bench, server, config, bench.cookies[:20])
        bench.client.request({"cmd": "close"}, SLACK)
        settle(server.pids)
        time.sleep(1)
    rss_before = status_kb(server.pids, "VmRSS")
    threads_before = status_kb(server.pids, "Threads")
    reply = connect(bench, server, config, bench.cookies[:count])
    time.sleep(2)
    settle(server.pids)
    # Idle cost: keepalives only.
    cpu_before = cpu_seconds(server.pids)
    time.sleep(args.idle_cpu_seconds)
    idle_cpu = 100 * (cpu_seconds(server.pids) - cpu_before) / args.idle_cpu_seconds
    rss_after = status_kb(server.pids, "VmRSS")
    ready = reply["ready"]
    result = {
        "kind": "hold",
        "config": config.name,
        "n": count,
        "ready": ready,
        "failed": reply["failed"],
        "errors": reply["errors"],
        "connect_seconds": reply["seconds"],
        "connects_per_second": round(ready / reply["seconds"], 1) if reply["seconds"] else None,
        "rss_before_kb": rss_before,
        "rss_after_kb": rss_after,
        "kb_per_stream": round((rss_after - rss_before) / ready, 2) if ready else None,
        "threads_before": threads_before,
        "threads_after": status_kb(server.pids, "Threads"),
        "idle_cpu_percent": round(idle_cpu, 1),
        "pg_connections": data.server_connections(bench.database),
        "warmed_up": warm_up,
        "workers": server.workers,
        "streams_per_worker": server.sockets_per_worker(),
    }
    bench.record(result)
    return result


def connect(bench: Bench, server: Server, config: Config, cookies: list[str]) -> dict:
    timeout = bench.args.connect_timeout
    return bench.client.request(
        {
            "cmd": "connect",
            "port": server.port,
            "path": config.stream_path,
            "cookies": cookies,
            "concurrency": bench.args.connect_concurrency,
            "within": timeout,
        },
        timeout + SLACK,
    )


def publish_run(
    bench: Bench,
    server: Server,
    config: Config,
    *,
    kind: str,
    n: int,
    ready: int,
    rate: float,
    count: int,
    publishers: int = 1,
    repeat: int = 0,
    mode: str | None = None,
    max_seconds: float | None = None,
    steady: bool = False,
) -> dict:
    """Publish ``count`` notifications to ``n`` users at ``rate``/s; count what arrives.

    ``mode`` is the publisher's (default: the app's service; ``streamsite-layer``: the
    service's channel-layer messages without its database writes; ``floor``: the floor's
    Redis channel). A ``steady`` run reports its latency per ``--window-seconds`` too.
    """
    args = bench.args
    if not bench.keep_notifications:
        data.delete_notifications()
    max_seconds = max_seconds or args.max_publish_seconds
    mode = mode or config.site
    run = secrets.token_hex(4)
    recipients = bench.recipients_file(n)
    profiler = watch = None
    children = [
        publisher(
            bench.env,
            mode=mode,
            recipients=recipients,
            run=run,
            rate=rate,
            count=count,
            index=index,
            of=publishers,
            max_seconds=max_seconds,
        )
        for index in range(publishers)
    ]
    try:
        for child in children:
            child.receive(timeout=120)  # set up and warm
        window = args.window_seconds if steady else 0
        start = {"cmd": "start", "run": run, "count": count, "window": window}
        bench.client.request(start, SLACK)
        drops_before = server.log_count("over capacity")
        reset_peak_rss(server.pids)
        rss_before = status_kb(server.pids, "VmRSS")
        pids = {"server": server.pids, "client": bench.client.pid}
        pids |= {f"publisher{i}": child.pid for i, child in enumerate(children)}
        if bench.profile_dir is not None:
            name = f"{config.name}-{kind}-n{n}-r{rate}-p{publishers}-{mode}-{repeat}.txt"
            profiler = Profiler(server.pids[0], bench.profile_dir / name, bench.env)
        if steady and bench.env["DATABASE_URL"].startswith("postgres"):
            watch = PostgresWatch(bench.env["DATABASE_URL"]).start()
        with Sampler(pids, fds=steady) as sampler:
            t0 = time.time() + 0.2
            for child in children:
                child.send({"t0": t0})
            reports = [child.receive(max_seconds + 120) for child in children]
            sent = sorted(s for report in reports for s in report["sent"])
            published = len(sent)
            expected = ready * published
            deadline = (sent[-1] if sent else time.time()) + args.drain
            while time.time() < deadline:
                progress = bench.client.request({"cmd": "progress"}, SLACK)
                if progress["unique"] >= expected:
                    break
                time.sleep(0.1)
            summary = bench.client.request({"cmd": "stop"}, 120)
        peak_kb = max(status_kb(server.pids, "VmHWM"), sampler.peak_rss_kb())
    finally:
        for child in children:
            child.close()
        if profiler is not None:
            profiler.stop()
        if watch is not None:
            watch.stop()
    durations = sorted(d for report in reports for d in report["durations"])
    first = sent[0] if sent else None
    last_receive = summary["last_receive"]
    # The busy window: from the first publish until the last delivery or publish return.
    done = [
        s + d
        for report in reports
        for s, d in zip(report["sent"], report["durations"], strict=True)
    ]
    end = max([*done, last_receive or 0], default=0)
    unique = summary["unique"]

    def cpu(name: str) -> float | None:
        return sampler.cpu_percent(name, first, end) if first else None

    windows = summary["windows"]
    for window in windows:  # the server's memory and open files at the end of each window
        window_end = first + window["start_seconds"] + args.window_seconds
        window["rss_kb"], window["fds"] = sampler.resources_at(window_end)

    result = {
        "kind": kind,
        "config": config.name,
        "n": n,
        "ready": ready,
        "rate": rate,
        "count": count,
        "publishers": publishers,
        "mode": {
            "streamsite-layer": "layer-only",
            "floor": "floor",
            "streamsite-announce": "announcement",
        }.get(mode, "service"),
        "steady": steady,
        "repeat": repeat,
        "run": run,
        "published": published,
        "publish_seconds": round(sent[-1] - first, 3) if published > 1 else 0,
        "publishes_per_second": round((published - 1) / (sent[-1] - first), 2)
        if published > 1 and sent[-1] > first
        else None,
        "stopped_by_deadline": any(report["stopped_by_deadline"] for report in reports),
        "service_call_ms": {
            "p50": round(1000 * statistics.median(durations), 1) if durations else None,
            "max": round(1000 * durations[-1], 1) if durations else None,
        },
        "slow_service_calls": slow_service_calls(watch, reports, first),
        "expected": expected,
        "delivered": unique,
        "loss_percent": round(100 * (1 - unique / expected), 3) if expected else None,
        "deliveries_per_second": round(unique / (last_receive - first), 1)
        if last_receive and first and last_receive > first
        else None,
        "target_deliveries_per_second": round(ready * rate),
        "latency_ms": summary["latency_ms"],
        "latency_mean_ms": summary["latency_mean_ms"],
        "latency_windows": windows,
        "busy_seconds": round(end - first, 3) if first else None,
        "cpu_percent": {
            name: cpu(name) for name in ["server", "client", "redis", "postgres", "machine"]
        }
        | {"publishers": _sum(cpu(f"publisher{i}") for i in range(publishers))},
        "rss_before_kb": rss_before,
        "rss_peak_kb": peak_kb,
        "threads": status_kb(server.pids, "Threads"),
        "layer_drops_logged": server.log_count("over capacity") - drops_before,
        "streams_ended_by_server": summary["closed_during_run"],
        "duplicates": summary["duplicates"],
        "foreign_events": summary["foreign"],
        "raw": {
            "sent": sent,
            "service_call_seconds": [d for report in reports for d in report["durations"]],
            "publisher_cpu_seconds": [report["cpu_seconds"] for report in reports],
            "per_seq_delivered": summary["per_seq"],
            "deliveries_per_second_timeline": summary["per_second"],
            "histogram_ms": summary["histogram_ms"],
        },
    }
    bench.record(result)
    settle(server.pids)
    return result


#: A service call this slow is laid beside what PostgreSQL and the kernel were doing
#: (``bench.pg_watch``): about ten times a steady run's median.
SLOW_CALL_SECONDS = 0.25


def slow_service_calls(watch: PostgresWatch | None, reports: list[dict], first) -> list[dict]:
    """The steady run's slow service calls, when it watched PostgreSQL: seconds into the
    run, milliseconds, and the waits, vacuums and kernel writeback seen during each."""
    if watch is None or first is None:
        return []
    calls = [
        (s, d)
        for report in reports
        for s, d in zip(report["sent"], report["durations"], strict=True)
    ]
    slow = slow_calls(watch, sorted(calls), SLOW_CALL_SECONDS)
    for call in slow:
        call["at_seconds"] = round(call.pop("started") - first, 1)
    return slow


def _sum(values) -> float | None:
    values = [v for v in values if v is not None]
    return round(sum(values), 1) if values else None


#: The production server with two worker processes (``serve --workers 2``): fan-out only,
#: measured like the production server to compare deliveries/s and CPU per delivery (as
#: are streamsite on the other ASGI servers, ``bench.processes.OTHER_ASGI_SERVERS``).
TWO_WORKERS = "streamsite-uvicorn2"


def fanout(bench: Bench, config: Config) -> None:
    """(a) N streams, then publishes at each rate; (c) PostgreSQL connections of the N.

    The floor publishes at every rate, and so does streamsite-uvicorn's layer-only run
    (the server alone), for the ratio of the two. streamsite-uvicorn's lowest rate at the
    smallest N is the steady run (``--steady-seconds`` after a ``--warmup-seconds`` run).
    """
    args = bench.args
    steady_rate = min(rate for rate, _count in args.rates)
    for n in args.fanout_n:
        with bench.server(config, f"fanout-{n}") as server:
            held = hold(bench, server, config, n, warm_up=False)
            run = functools.partial(
                publish_run, bench, server, config, kind="fanout", n=n, ready=held["ready"]
            )
            steady = (
                config.name == PRODUCTION and n == min(args.fanout_n) and args.steady_seconds > 0
            )
            for rate, count in args.rates:
                if config.app == "floor":
                    run(rate=rate, count=count)
                elif steady and rate == steady_rate:
                    run(kind="warmup", rate=rate, count=max(1, round(rate * args.warmup_seconds)))
                    run(
                        rate=rate, count=round(rate * args.steady_seconds), steady=True,
                        max_seconds=args.steady_seconds + args.max_publish_seconds,
                    )  # fmt: skip
                else:
                    for repeat in range(args.repeats if rate <= 10 else 1):
                        started = time.monotonic()
                        run(rate=rate, count=count, repeat=repeat)
                        if time.monotonic() - started > CHEAP_SECONDS:
                            break  # repeated only while a run is cheap
            if config.name in (PRODUCTION, TWO_WORKERS) or config.server in OTHER_ASGI_SERVERS:
                # Is the publisher the limit? Several publishers, and the fan-out alone.
                rate, count = max(args.rates)
                if n == min(args.fanout_n) and args.extra_publishers > 1:
                    run(rate=rate, count=count, publishers=args.extra_publishers)
                if args.layer_only:
                    for rate, count in args.rates:
                        run(rate=rate, count=count, mode="streamsite-layer")
            bench.client.request({"cmd": "close"}, SLACK)


def soak(bench: Bench, config: Config) -> None:
    """``--soak-seconds`` at the lowest rate to the smallest N: latency, memory and open
    files per ``--window-seconds``, which must stay flat."""
    args = bench.args
    rate, n = min(rate for rate, _count in args.rates), min(args.fanout_n)
    with bench.server(config, "soak") as server:
        held = hold(bench, server, config, n, warm_up=False)
        run = functools.partial(
            publish_run, bench, server, config, n=n, ready=held["ready"], rate=rate
        )
        run(kind="warmup", count=max(1, round(rate * args.warmup_seconds)))
        run(
            kind="soak", count=round(rate * args.soak_seconds), steady=True,
            max_seconds=args.soak_seconds + args.max_publish_seconds,
        )  # fmt: skip
        bench.client.request({"cmd": "close"}, SLACK)


def pg_connections(bench: Bench, config: Config) -> None:
    """(c) PostgreSQL connections while ``--pg-n`` idle streams are open."""
    with bench.server(config, "pg") as server:
        hold(bench, server, config, bench.args.pg_n, warm_up=False)
        bench.client.request({"cmd": "close"}, SLACK)


def idle(bench: Bench, config: Config) -> None:
    """(b) Memory and connect rate of ``--idle-n`` idle streams, then one broadcast to all
    (streamsite-uvicorn: through the service, then layer only, to compare with the floor)."""
    args = bench.args
    # streamsite: a notification to every user is an announcement (one row); the per-user
    # rows of notifications_create_many and the layer alone are measured beside it.
    modes = ["streamsite-announce", None] if config.site == "streamsite" else [None]
    if config.name == PRODUCTION and args.layer_only:
        modes.append("streamsite-layer")
    with bench.server(config, "idle") as server:
        held = hold(bench, server, config, args.idle_n, warm_up=True)
        for mode in modes:
            for repeat in range(args.repeats):
                started = time.monotonic()
                publish_run(
                    bench, server, config, kind="broadcast", n=args.idle_n, ready=held["ready"],
                    rate=1, count=1, repeat=repeat, mode=mode,
                )  # fmt: skip
                if time.monotonic() - started > CHEAP_SECONDS:
                    break
        bench.client.request({"cmd": "close"}, SLACK)
