"""Benchmark streamsite's chat socket against the Channels-tutorial chat, side by side.

``python -m bench.chat [--quick] [--only idle,room,room2] [...]`` creates a database of
its own on the local PostgreSQL, uses a Redis database of its own, and for each scenario
starts each server in turn (uvicorn with the production command's flags: streamsite's
``manage.py serve`` and the baseline ``bench.chat_baseline``), a fresh server for every
measurement. Sockets of distinct logged-in users are held by separate load-generator
processes (``bench.ws_client``), which also send the messages and count every delivery
end to end. Scenarios:

- ``idle``: hold ``--idle-n`` sockets (one process), spread over ``--idle-rooms`` rooms:
  memory per socket (RSS growth / sockets), threads, connect rate, idle CPU;
- ``room``: one room of ``--room-n`` sockets, ``--senders`` of them sending at each of
  ``--rates`` messages per second (all senders together) for ``--seconds``: delivery
  latency, deliveries/s, losses counted after a ``--drain``;
- ``room2``: the same room across two uvicorn worker processes (Redis channel layer).

Raw records go to ``bench/results/<time>-chat[-quick].jsonl``; the tables are printed
(``python -m bench.chat_report FILE`` prints them again). Only 127.0.0.1 is contacted;
every child is stopped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
import traceback
from array import array
from datetime import UTC, datetime
from pathlib import Path

from bench import chat_report, data
from bench.chat_servers import ChatServer
from bench.machine import describe
from bench.processes import BASE_DIR, LineChild, Profiler, Sampler, stop_all
from bench.sse import prepare_run, redis_client, server_environment

SCENARIOS = ("idle", "room", "room2")
CONFIGS = ("streamsite", "baseline")
RESULTS_DIR = BASE_DIR / "bench" / "results"
SLACK = 30

FULL = {"idle_n": 10000, "room_n": 1000, "rates": "10,50", "seconds": 20, "repeats": 1}
QUICK = {"idle_n": 1000, "room_n": 200, "rates": "10,50", "seconds": 5, "repeats": 1}

#: The server environment added for the benchmark: the per-user rate limit (20 messages
#: per 10 s by default) would refuse a sender's 5 messages/s; the benchmark measures
#: delivery, not the limiter, so it is raised far out of reach.
BENCH_ENVIRONMENT = {"CHAT_RATE_LIMIT_MESSAGES": "1000000", "CHAT_RATE_LIMIT_SECONDS": "10"}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.chat", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="small N, short runs (~3 min)")
    parser.add_argument("--only", default=",".join(SCENARIOS), help="of: " + ",".join(SCENARIOS))
    parser.add_argument("--configs", default=",".join(CONFIGS), help="of: " + ",".join(CONFIGS))
    parser.add_argument("--idle-n", type=int, help="idle sockets held (full: 10000)")
    parser.add_argument("--idle-rooms", type=int, default=100, help="rooms the idle sockets use")
    parser.add_argument("--room-n", type=int, help="sockets in the room (full: 1000)")
    parser.add_argument("--rates", help="messages per second into the room (full: 10,50)")
    parser.add_argument("--seconds", type=float, help="sending time per run (full: 20)")
    parser.add_argument("--senders", type=int, default=10, help="sockets that send (default 10)")
    parser.add_argument("--repeats", type=int, help="runs of each room measurement (full: 1)")
    parser.add_argument("--drain", type=float, default=10, help="seconds after the last send")
    parser.add_argument("--clients", type=int, default=2, help="load-generator processes")
    parser.add_argument("--connect-concurrency", type=int, default=100)
    parser.add_argument("--connect-timeout", type=float, default=600)
    parser.add_argument("--idle-cpu-seconds", type=float, default=3)
    parser.add_argument("--redis-db", type=int, default=10, help="Redis database (not 0-3)")
    parser.add_argument("--keep-logs", action="store_true", help="keep the servers' logs")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="py-spy record every server worker during each room run (raw stacks in "
        "bench/results/<time>-chat-profiles/; summarise with python -m bench.profile_top)",
    )
    args = parser.parse_args(argv)
    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.rates = [float(r) if "." in r else int(r) for r in str(args.rates).split(",") if r]
    args.only = [s for s in args.only.split(",") if s]
    args.configs = [c for c in args.configs.split(",") if c]
    for name, allowed in (("only", SCENARIOS), ("configs", CONFIGS)):
        unknown = set(getattr(args, name)) - set(allowed)
        if unknown:
            parser.error(f"unknown {name}: {', '.join(sorted(unknown))}")
    if args.redis_db in range(4):
        parser.error("--redis-db 0-3 are used by development and tests; pick another")
    return args


class Clients:
    """The load-generator processes, driven together; sockets are dealt round-robin."""

    def __init__(self, count: int, env: dict) -> None:
        argv = [sys.executable, "-m", "bench.ws_client"]
        self.children = [LineChild(argv, env) for _ in range(count)]

    @property
    def pids(self) -> list[int]:
        return [child.pid for child in self.children]

    def all(self, commands: list[dict] | dict, timeout: float) -> list[dict]:
        if isinstance(commands, dict):
            commands = [commands] * len(self.children)
        for child, command in zip(self.children, commands, strict=True):
            child.send(command)
        return [child.receive(timeout) for child in self.children]

    def connect(self, port: int, paths: list[str], cookies: list[str], args, ready_on: str):
        k = len(self.children)
        commands = [
            {
                "cmd": "connect",
                "port": port,
                "paths": paths[i::k],
                "cookies": cookies[i::k],
                "concurrency": max(1, args.connect_concurrency // k),
                "within": args.connect_timeout,
                "ready_on": ready_on,
            }
            for i in range(k)
        ]
        replies = self.all(commands, args.connect_timeout + SLACK)
        errors: dict[str, int] = {}
        for reply in replies:
            for error, count in reply["errors"].items():
                errors[error] = errors.get(error, 0) + count
        return {
            "ready": sum(r["ready"] for r in replies),
            "failed": sum(r["failed"] for r in replies),
            "seconds": max(r["seconds"] for r in replies),
            "errors": errors,
        }

    def close(self) -> None:
        self.all({"cmd": "close"}, SLACK)

    def shutdown(self) -> None:
        for child in self.children:
            child.close()


class ChatBench:
    def __init__(self, args, env, database, log_dir, users, cookies, clients, record):
        self.args = args
        self.env = env
        self.database = database
        self.log_dir = log_dir
        self.users = users
        self.cookies = cookies
        self.clients = clients
        self.record = record
        self.profile_dir: Path | None = None

    def server(self, app: str, workers: int, label: str) -> ChatServer:
        return ChatServer(app, workers, self.env, self.log_dir, f"{app}-w{workers}-{label}")


def ready_on(app: str) -> str:
    """When a socket counts as ready: streamsite's history frame comes after its subscribe;
    the tutorial joins its group before ``accept()``, so the upgrade is enough."""
    return "history" if app == "streamsite" else "upgrade"


def settle(pids: list[int], *, quiet_percent: float = 25, timeout: float = 20) -> None:
    from bench.processes import cpu_seconds

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = sum(cpu_seconds(pid) for pid in pids)
        time.sleep(0.5)
        if (sum(cpu_seconds(pid) for pid in pids) - before) * 200 < quiet_percent:
            return


def create_room(slug: str) -> None:
    from chat.models import Room

    Room.objects.create(slug=slug, name=slug)


# Scenarios -------------------------------------------------------------------------------


def idle(bench: ChatBench, app: str) -> None:
    """Hold ``--idle-n`` sockets in one process: memory, threads, connect rate."""
    from bench.processes import cpu_seconds

    args = bench.args
    rooms = [f"idle-{i}" for i in range(args.idle_rooms)]
    with bench.server(app, 1, "idle") as server:
        # Warm-up (imports, pools, the hub): not per-socket memory.
        bench.clients.connect(
            server.port, [f"/ws/chat/{rooms[0]}/"] * 20, bench.cookies[-20:], args, ready_on(app)
        )
        bench.clients.close()
        settle([server.pid])
        time.sleep(1)
        rss_before, threads_before = server.rss_kb(), server.threads()
        n = args.idle_n
        paths = [f"/ws/chat/{rooms[i % len(rooms)]}/" for i in range(n)]
        reply = bench.clients.connect(server.port, paths, bench.cookies[:n], args, ready_on(app))
        time.sleep(2)
        settle([server.pid])
        cpu_before = cpu_seconds(server.pid)
        time.sleep(args.idle_cpu_seconds)
        idle_cpu = 100 * (cpu_seconds(server.pid) - cpu_before) / args.idle_cpu_seconds
        rss_after = server.rss_kb()
        stats = bench.clients.all({"cmd": "stats"}, SLACK)
        ready = reply["ready"]
        bench.record(
            {
                "kind": "chat-idle",
                "config": app,
                "workers": 1,
                "n": n,
                "rooms": len(rooms),
                "ready": ready,
                "failed": reply["failed"],
                "errors": reply["errors"],
                "open_after_hold": sum(s["open"] for s in stats),
                "close_codes": _merge_counts(s["close_codes"] for s in stats),
                "connect_seconds": reply["seconds"],
                "connects_per_second": round(ready / reply["seconds"], 1)
                if reply["seconds"]
                else None,
                "rss_before_kb": rss_before,
                "rss_after_kb": rss_after,
                "kb_per_socket": round((rss_after - rss_before) / ready, 2) if ready else None,
                "threads_before": threads_before,
                "threads_after": server.threads(),
                "idle_cpu_percent": round(idle_cpu, 1),
                "pg_connections": data.server_connections(bench.database),
            }
        )
        bench.clients.close()


def room(bench: ChatBench, app: str, workers: int, rate, repeat: int) -> dict:
    """One room of ``--room-n`` sockets; ``--senders`` send ``rate``/s for ``--seconds``."""
    args = bench.args
    run = secrets.token_hex(4)
    slug = f"room-{run}"
    create_room(slug)
    n = args.room_n
    count = max(1, round(rate * args.seconds))
    with bench.server(app, workers, f"room-r{rate}-{repeat}") as server:
        pids = server.worker_pids()
        rss_start = server.rss_kb()
        frames_before = sum(s["frames"] for s in bench.clients.all({"cmd": "stats"}, SLACK))
        reply = bench.clients.connect(
            server.port, [f"/ws/chat/{slug}/"] * n, bench.cookies[:n], args, ready_on(app)
        )
        time.sleep(1)
        settle(pids)
        rss_connected = server.rss_kb()
        per_worker = server.sockets_per_worker()
        # Frames the sockets got while the room filled (presence, history): before any send.
        connect_frames = (
            sum(s["frames"] for s in bench.clients.all({"cmd": "stats"}, SLACK)) - frames_before
        )
        ready = reply["ready"]
        k = len(bench.clients.children)
        senders = min(args.senders, ready)
        # Global sender g is socket g // k of client g % k (sockets are dealt round-robin).
        start = [
            {
                "cmd": "start",
                "run": run,
                "count": count,
                "rate": rate,
                "t0": 0,
                "senders": {str(g): g // k for g in range(senders) if g % k == i},
                "of": senders,
            }
            for i in range(k)
        ]
        profilers = []
        if bench.profile_dir is not None:
            for index, pid in enumerate(pids):
                name = f"{app}-w{workers}-r{rate}-{repeat}-worker{index}.txt"
                profilers.append(Profiler(pid, bench.profile_dir / name, bench.env))
        sampled = {f"server{i}": pid for i, pid in enumerate(pids)}
        sampled |= {f"client{i}": pid for i, pid in enumerate(bench.clients.pids)}
        try:
            with Sampler(sampled) as sampler:
                t0 = time.time() + 0.5
                for command in start:
                    command["t0"] = t0
                bench.clients.all(start, SLACK)
                last_due = t0 + (count - 1) / rate
                # Sending, then the drain: stop early once everything has arrived.
                while True:
                    time.sleep(0.25)
                    progress = bench.clients.all({"cmd": "progress"}, SLACK)
                    sent = sum(p["sent"] for p in progress)
                    unique = sum(p["unique"] for p in progress)
                    sending = any(p["sending"] for p in progress)
                    if not sending and unique >= ready * sent:
                        break
                    if time.time() > last_due + args.drain and (
                        not sending or time.time() > last_due + 2 * args.drain
                    ):
                        break
                summaries = bench.clients.all({"cmd": "stop"}, 120)
            rss_peak = server.rss_kb()
        finally:
            for profiler in profilers:
                profiler.stop()
        sent_times = sorted(t for s in summaries for t in s["sent"].values())
        sent = len(sent_times)
        latencies = array("d")
        for summary in summaries:
            with open(summary["latencies_file"], "rb") as file:
                latencies.frombytes(file.read())
            os.unlink(summary["latencies_file"])
        latencies = sorted(latencies)
        from bench.ws_client import PERCENTILES, percentile

        delivered = sum(s["unique"] for s in summaries)
        expected = ready * sent
        first = sent_times[0] if sent_times else None
        last_receive = max((s["last_receive"] or 0 for s in summaries), default=0)
        end = max(last_receive, sent_times[-1] if sent_times else 0)

        def cpu(name: str) -> float | None:
            return sampler.cpu_percent(name, first, end) if first and end > first else None

        server_cpu = [cpu(f"server{i}") for i in range(len(pids))]
        server_cpu_total = sum(c for c in server_cpu if c is not None)
        busy_seconds = end - first if first else 0
        result = {
            "kind": "chat-room",
            "config": app,
            "workers": workers,
            "n": n,
            "ready": ready,
            "connect_failed": reply["failed"],
            "connect_errors": reply["errors"],
            "connect_seconds": reply["seconds"],
            "connects_per_second": round(ready / reply["seconds"], 1) if reply["seconds"] else None,
            "sockets_per_worker": per_worker,
            "connect_frames": connect_frames,
            "rate": rate,
            "seconds": args.seconds,
            "count": count,
            "senders": senders,
            "repeat": repeat,
            "run": run,
            "sent": sent,
            "send_rate": round((sent - 1) / (sent_times[-1] - first), 2)
            if sent > 1 and sent_times[-1] > first
            else None,
            "acks": sum(s["acks"] for s in summaries),
            # sent -> ack (streamsite: the message is committed), per client process.
            "ack_latency_ms": [s.get("ack_latency_ms") for s in summaries],
            "errors": _merge_counts(s["errors"] for s in summaries),
            "error_samples": [e for s in summaries for e in s["error_samples"]][:5],
            "expected": expected,
            "delivered": delivered,
            "lost": expected - delivered,
            "loss_percent": round(100 * (1 - delivered / expected), 3) if expected else None,
            "duplicates": sum(s["duplicates"] for s in summaries),
            "closed_during_run": sum(s["closed_during_run"] for s in summaries),
            "deliveries_per_second": round(delivered / (last_receive - first), 1)
            if last_receive and first and last_receive > first
            else None,
            "target_deliveries_per_second": round(ready * rate),
            "latency_ms": {name: percentile(latencies, p) for name, p in PERCENTILES}
            if latencies
            else {},
            "latency_mean_ms": round(1000 * sum(latencies) / len(latencies), 3)
            if latencies
            else None,
            "send_lag_ms_max": max(
                (s["send_lag_ms"].get("max", 0) for s in summaries), default=None
            ),
            "busy_seconds": round(busy_seconds, 3),
            "cpu_percent": {
                "server": round(server_cpu_total, 1),
                "server_workers": server_cpu,
                "client": round(sum(cpu(f"client{i}") or 0 for i in range(k)), 1),
                "redis": cpu("redis"),
                "postgres": cpu("postgres"),
                "machine": cpu("machine"),
            },
            "server_cpu_us_per_delivery": round(
                server_cpu_total / 100 * busy_seconds / delivered * 1e6, 1
            )
            if delivered
            else None,
            "rss_start_kb": rss_start,
            "rss_connected_kb": rss_connected,
            "rss_end_kb": rss_peak,
            "kb_per_socket_connected": round((rss_connected - rss_start) / ready, 2)
            if ready
            else None,
            "threads": server.threads(),
            "layer_drops_logged": server.log_count("over capacity"),
            "raw": {
                "per_second": _sum_timelines([s["per_second"] for s in summaries]),
                "histogram_ms": _sum_histograms([s["histogram_ms"] for s in summaries]),
                "sent_times": sent_times,
            },
        }
        bench.record(result)
        bench.clients.close()
    return result


def _merge_counts(items) -> dict:
    total: dict = {}
    for item in items:
        for key, value in item.items():
            total[key] = total.get(key, 0) + value
    return total


def _sum_timelines(timelines: list[list[int]]) -> list[int]:
    length = max((len(t) for t in timelines), default=0)
    return [sum(t[i] for t in timelines if i < len(t)) for i in range(length)]


def _sum_histograms(histograms: list[dict]) -> dict:
    counts = [sum(values) for values in zip(*(h["counts"] for h in histograms), strict=True)]
    return {"edges": histograms[0]["edges"], "counts": counts}


# Main ------------------------------------------------------------------------------------


def main(argv=None) -> int:
    args = parse_args(argv)
    busy = prepare_run("bench.chat")
    started = time.monotonic()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    RESULTS_DIR.mkdir(exist_ok=True)
    results_path = RESULTS_DIR / f"{stamp}-chat{'-quick' if args.quick else ''}.jsonl"
    log_dir = Path(tempfile.mkdtemp(prefix="streamsite-bench-chat-"))
    database = f"streamsite_bench_chat_{os.getpid()}"
    layer_redis = redis_client(args.redis_db)
    records: list[dict] = []
    interrupted = False
    clients = None

    def record(item: dict) -> None:
        item = {"t": round(time.time(), 3), **item}
        records.append(item)
        with open(results_path, "a") as file:
            file.write(json.dumps(item) + "\n")
        print(chat_report.progress_line(item), flush=True)

    print(f"bench.chat: database {database}, Redis db {args.redis_db}, logs in {log_dir}")
    try:
        env = server_environment(data.create_database(database), args.redis_db)
        env |= BENCH_ENVIRONMENT
        layer_redis.flushdb()
        data.setup_django(env)
        machine = describe(
            redis_version=layer_redis.info("server").get("redis_version"),
            postgresql_version=data.versions()["postgresql"],
        )
        record({"kind": "machine", **machine, "busy_percent_at_start": round(busy, 1)})
        record({"kind": "options", **vars(args), "server_environment": BENCH_ENVIRONMENT})
        users = max(args.idle_n if "idle" in args.only else 0, args.room_n) + 20
        setup_started = time.monotonic()
        user_ids = data.create_users(users, prefix="chat")
        cookies = data.create_sessions(user_ids)
        for i in range(args.idle_rooms):
            create_room(f"idle-{i}")
        seconds = time.monotonic() - setup_started
        print(f"bench.chat: {users:,} users and sessions in {seconds:.1f}s")
        clients = Clients(args.clients, env)
        bench = ChatBench(args, env, database, log_dir, user_ids, cookies, clients, record)
        if args.profile:
            bench.profile_dir = RESULTS_DIR / f"{stamp}-chat-profiles"
            bench.profile_dir.mkdir(exist_ok=True)
        run_scenarios(bench)
    except KeyboardInterrupt:
        interrupted = True
        print("bench.chat: interrupted; stopping everything", file=sys.stderr)
    except Exception:
        interrupted = True
        traceback.print_exc()
        print("bench.chat: failed; stopping everything (server logs kept)", file=sys.stderr)
        args.keep_logs = True
    finally:
        if clients is not None:
            with contextlib.suppress(Exception):
                clients.shutdown()
        stop_all()
        try:
            data.close_django()
        except Exception as error:
            print(f"bench.chat: closing connections: {error}", file=sys.stderr)
        data.drop_database(database)
        with contextlib.suppress(Exception):
            layer_redis.flushdb()
    elapsed = (time.monotonic() - started) / 60
    relative = results_path.relative_to(BASE_DIR)
    if any(r.get("kind") == "machine" for r in records):
        print("\n" + chat_report.render(records, str(relative), elapsed))
    if not args.keep_logs:
        shutil.rmtree(log_dir, ignore_errors=True)
    print(f"bench.chat: raw results in {relative}; {elapsed:.1f} min")
    return 1 if interrupted else 0


def run_scenarios(bench: ChatBench) -> None:
    """All configurations for one measurement before the next, alternating which goes first."""
    args = bench.args
    if "idle" in args.only:
        for app in args.configs:
            idle(bench, app)
    for scenario, workers in (("room", 1), ("room2", 2)):
        if scenario not in args.only:
            continue
        for rate in args.rates:
            for repeat in range(args.repeats):
                order = args.configs if repeat % 2 == 0 else list(reversed(args.configs))
                for app in order:
                    room(bench, app, workers, rate, repeat)


if __name__ == "__main__":
    sys.exit(main())
