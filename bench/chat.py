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
- ``room2``: the same room across two uvicorn worker processes (Redis channel layer);
- ``bigroom``: ``--bigroom-n`` sockets of as many distinct users join ONE room on one
  process (streamsite and the floor): refused and closed sockets, joins/s, memory per
  socket, idle CPU once joined, then one message: latency to all and how many got it.

Configurations: ``streamsite``, ``baseline`` (the Channels tutorial) and ``floor`` (a plain
``websockets`` broadcast server, ``bench.floor_ws``, one process: not in ``room2``); and,
only when named, ``streamsite-nometrics``: the same server with every metric update a
no-op (``bench/nometrics/sitecustomize.py``), for the metrics' cost.
``--compression both`` (the default) repeats ``idle`` and ``room`` at the highest rate
with permessage-deflate offered as Chromium offers it. Every room created for ``room`` and
``bigroom`` already holds ``--history-messages`` messages.

Raw records go to ``bench/results/<time>-chat[-quick].jsonl``; the tables are printed
(``python -m bench.chat_report FILE`` prints them again). Only 127.0.0.1 is contacted;
every child is stopped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

from bench import chat_report, data
from bench.chat_scenarios import bigroom, create_room, idle, room
from bench.chat_servers import NOMETRICS, ChatServer
from bench.machine import describe
from bench.processes import BASE_DIR, LineChild, stop_all
from bench.sse import prepare_run, redis_client, server_environment

SCENARIOS = ("idle", "room", "room2", "bigroom")
CONFIGS = ("streamsite", "baseline", "floor")
RESULTS_DIR = BASE_DIR / "bench" / "results"
SLACK = 30

FULL = {
    "idle_n": 10000, "room_n": 1000, "rates": "10,50", "seconds": 60, "repeats": 1,
    "bigroom_n": 10000, "history_messages": 100_000, "soak_seconds": 600, "window_seconds": 60,
}  # fmt: skip
QUICK = {
    "idle_n": 1000, "room_n": 200, "rates": "10,50", "seconds": 5, "repeats": 1,
    "bigroom_n": 1000, "history_messages": 1000, "soak_seconds": 30, "window_seconds": 5,
}  # fmt: skip
COMPRESSION = {"off": [False], "on": [True], "both": [False, True]}

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
    parser.add_argument(
        "--configs",
        help="of: " + ",".join(CONFIGS) + " (default: all; with --soak: the first); "
        f"{NOMETRICS} when named: streamsite with every metric update a no-op",
    )
    parser.add_argument("--idle-n", type=int, help="idle sockets held (full: 10000)")
    parser.add_argument("--idle-rooms", type=int, default=100, help="rooms the idle sockets use")
    parser.add_argument("--room-n", type=int, help="sockets in the room (full: 1000)")
    parser.add_argument("--rates", help="messages per second into the room (full: 10,50)")
    parser.add_argument("--seconds", type=float, help="sending time per run (full: 60)")
    parser.add_argument(
        "--bigroom-n", type=int, help="sockets (distinct users) in the big room (full: 10000)"
    )
    parser.add_argument(
        "--bigroom-idle-seconds",
        type=float,
        default=40,
        help="idle CPU measured over (40: two of the servers' 20-s keepalive ping rounds)",
    )
    parser.add_argument(
        "--history-messages",
        type=int,
        help="messages in each benchmark room before anyone joins (full: 100000)",
    )
    parser.add_argument(
        "--soak",
        action="store_true",
        help="instead of the scenarios: one room of --room-n at the lowest rate for "
        "--soak-seconds, with latency, server memory and open files per --window-seconds",
    )
    parser.add_argument("--soak-seconds", type=float, help="the soak's length (full: 600)")
    parser.add_argument("--window-seconds", type=float, help="soak reported per (full: 60)")
    parser.add_argument(
        "--compression",
        choices=sorted(COMPRESSION),
        default="both",
        help="offer permessage-deflate as Chromium does: off, on (every scenario), or both "
        "(default: idle and room at the highest rate also with it)",
    )
    parser.add_argument("--senders", type=int, default=10, help="sockets that send (default 10)")
    parser.add_argument("--repeats", type=int, help="runs of each room measurement (full: 1)")
    parser.add_argument("--drain", type=float, default=10, help="seconds after the last send")
    parser.add_argument("--clients", type=int, default=2, help="load-generator processes")
    parser.add_argument("--connect-concurrency", type=int, default=100)
    parser.add_argument("--connect-timeout", type=float, default=600)
    parser.add_argument("--idle-cpu-seconds", type=float, default=3)
    parser.add_argument("--redis-db", type=int, default=10, help="Redis database (not 0-4)")
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
    if args.configs is None:
        args.configs = CONFIGS[0] if args.soak else ",".join(CONFIGS)
    args.configs = [c for c in args.configs.split(",") if c]
    for name, allowed in (("only", SCENARIOS), ("configs", (*CONFIGS, NOMETRICS))):
        unknown = set(getattr(args, name)) - set(allowed)
        if unknown:
            parser.error(f"unknown {name}: {', '.join(sorted(unknown))}")
    if args.redis_db in range(5):
        parser.error("--redis-db 0-4 are used by development and tests; pick another")
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

    def connect(
        self, port: int, paths: list[str], cookies: list[str], args, ready_on: str,
        compression: bool = False,
    ):  # fmt: skip
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
                "compression": compression,
            }
            for i in range(k)
        ]
        replies = self.all(commands, args.connect_timeout + SLACK)
        errors: dict[str, int] = {}
        for reply in replies:
            for error, count in reply["errors"].items():
                errors[error] = errors.get(error, 0) + count
        return {
            "compressed": sum(r["compressed"] for r in replies),
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

    def server(self, app: str, workers: int, label: str, deflate: bool = False) -> ChatServer:
        name = f"{app}-w{workers}-{label}"
        return ChatServer(app, workers, self.env, self.log_dir, name, deflate)


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
        users = (
            max(
                args.idle_n if "idle" in args.only and not args.soak else 0,
                args.bigroom_n if "bigroom" in args.only and not args.soak else 0,
                args.room_n,
            )
            + 20
        )
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
        if args.soak:
            for app in args.configs:
                room(bench, app, 1, min(args.rates), 0, soak=True)
        else:
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
    """All configurations for one measurement before the next, alternating which goes first.

    With ``--compression both``, idle and the one-process room at the highest rate run
    again with permessage-deflate; the floor is one process, so it has no ``room2``.
    """
    args = bench.args
    both = args.compression == "both"
    if "idle" in args.only:
        for compression in COMPRESSION[args.compression]:
            for app in args.configs:
                idle(bench, app, compression)
    for scenario, workers in (("room", 1), ("room2", 2)):
        if scenario not in args.only:
            continue
        for rate in args.rates:
            for compression in COMPRESSION[args.compression]:
                if compression and both and (workers > 1 or rate != max(args.rates)):
                    continue
                for repeat in range(args.repeats):
                    order = args.configs if repeat % 2 == 0 else list(reversed(args.configs))
                    for app in order:
                        if app != "floor" or workers == 1:
                            room(bench, app, workers, rate, repeat, compression)
    if "bigroom" in args.only:
        for app in args.configs:
            if app != "baseline":  # the goal compares streamsite with the floor
                bigroom(bench, app)


if __name__ == "__main__":
    sys.exit(main())
