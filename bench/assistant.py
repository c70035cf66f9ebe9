"""Benchmark the assistant: time to first token, streaming overhead, fan-out, stalls, Stop.

``python -m bench.assistant [--quick] [...]`` (``make bench-assistant ARGS=...``) creates a
database of its own on the local PostgreSQL, seeds it with a history of conversations,
uses a Redis database of its own, starts the fake OpenAI-compatible upstream
(``assistant.testing.fake_upstream``) in its own process on loopback, and for each
scenario a fresh server (``manage.py serve --workers 1``: uvicorn, production settings).
A separate load-generator process (``bench.assistant_client``) asks, follows and stops,
and measures every token against the send time the fake stamped into its text:

1. ``sequential``: the same scripted stream read straight from the fake (the floor) and
   through the site, one answer at a time, distinct users, at each ``--flush-ms``;
2. ``concurrent``: ``--concurrent-n`` answers at once (long enough to overlap), each
   watched by its POST and ``--tabs`` tabs;
3. ``stalled``: a tab that never reads while an answer of ``--stall-tokens`` streams;
4. ``stop``: Stop POSTed to the other of two servers; time until the upstream is cut.

Raw records go to ``bench/results/<time>-assistant[-quick].jsonl``; the tables are printed
and, for a full run, written into docs/benchmarks.md (``python -m bench.assistant_report
FILE`` prints them again, ``--docs`` writes them). Only 127.0.0.1 is contacted; every child
is stopped at the end.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from bench import assistant_data, assistant_report, data
from bench.assistant_scenarios import concurrent, sequential
from bench.assistant_stalled import stalled
from bench.assistant_steps import steps
from bench.assistant_stop import stop
from bench.processes import BASE_DIR, LineChild
from bench.run import RESULTS_DIR, BenchRun
from bench.sse import machine_busy_percent, prepare_run

SCENARIOS = ("steps", "sequential", "concurrent", "stalled", "stop")
DOCS = BASE_DIR / "docs" / "benchmarks.md"

FULL = {
    "steps_repeats": 200, "seq_answers": 200, "seq_warmup": 10, "seq_tokens": 20,
    "seq_token_delay": 0.02,
    "concurrent_n": 200, "concurrent_tokens": 5000,
    "concurrent_token_delay": 0.02, "stall_tokens": 10_000, "stall_token_delay": 0.01,
    "stall_flush_ms": 50, "stall_flood_asks": 1200, "stop_tries": 50,
    "history_conversations": 10_000,
}  # fmt: skip
QUICK = {
    "steps_repeats": 20, "seq_answers": 30, "seq_warmup": 5, "seq_tokens": 10,
    "seq_token_delay": 0.02,
    "concurrent_n": 40, "concurrent_tokens": 1000,
    "concurrent_token_delay": 0.02, "stall_tokens": 3000, "stall_token_delay": 0.004,
    "stall_flush_ms": 5, "stall_buffer_events": 200, "stall_flood_asks": 700,
    "stop_tries": 10, "history_conversations": 1000,
}  # fmt: skip


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.assistant", description=__doc__.split("\n\n")[0]
    )
    add = parser.add_argument
    add("--quick", action="store_true", help="small N, short runs (~3 min)")
    add("--scenarios", default=",".join(SCENARIOS), help="of: " + ",".join(SCENARIOS))
    add("--steps-repeats", type=int, help="times each step is timed alone (full: 200)")
    add("--flush-ms", default="50,1", help="ASSISTANT_FLUSH_MILLISECONDS of the sequential "
        "runs, one server each; the others run at the first (default: 50,1)")  # fmt: skip
    add("--seq-answers", type=int, help="answers kept per flush setting (full: 200)")
    add("--seq-warmup", type=int, help="answers asked first and not kept (full: 10)")
    add("--seq-tokens", type=int, help="tokens per sequential answer (full: 20)")
    add("--seq-token-delay", type=float, help="seconds before each token (full: 0.02)")
    add("--concurrent-n", type=int, help="answers streaming at once (full: 200)")
    add("--concurrent-ramp", type=float, default=5, help="seconds the asks are spread over")
    add("--concurrent-tokens", type=int, help="tokens per concurrent answer (full: 5000)")
    add("--concurrent-token-delay", type=float, help="seconds before each token (0.02)")
    add("--tabs", type=int, default=2, help="tabs following each conversation (default 2)")
    add("--drain", type=float, default=30, help="seconds the tabs may lag the last answer")
    add("--stall-tokens", type=int, help="tokens of the answer a stalled tab ignores (10000)")
    add("--stall-token-delay", type=float, help="seconds before each of them (full: 0.01)")
    add("--stall-flush-ms", type=int, help="ASSISTANT_FLUSH_MILLISECONDS then (full: 50)")
    add("--stall-buffer-events", type=int, help="SSE_BUFFER_EVENTS then (default: 1000)")
    add("--stall-flood-asks", type=int, help="questions asked next to the stalled tab (1200)")
    add("--stall-flood-chars", type=int, default=7900, help="characters of each (7900)")
    add("--stop-tries", type=int, help="Stops sent to the other server (full: 50)")
    add("--stop-tokens", type=int, default=2000, help="tokens of an answer to stop")
    add("--stop-token-delay", type=float, default=0.02, help="seconds before each")
    add("--stop-after-tokens", type=int, default=5, help="tokens shown before the Stop")
    add("--history-conversations", type=int, help="conversations seeded (full: 10000)")
    add("--history-turns", type=int, default=4, help="answered questions in each (4)")
    add("--redis-db", type=int, default=9, help="Redis database (not 0-4; emptied)")
    add("--database-prefix", default="streamsite_bench_assistant", help="the database "
        "created is <prefix>_<pid>, dropped at the end")  # fmt: skip
    add("--wait-quiet", type=float, default=0, help="first wait up to this many seconds "
        "for the machine to be under 25%% busy (it is shared)")  # fmt: skip
    add("--no-docs", action="store_true", help="do not write the tables into the docs")
    add("--keep-logs", action="store_true", help="keep the servers' logs")
    add("--profile", action="store_true", help="py-spy record the servers during each "
        "measured phase (bench/results/<time>-assistant-profiles/; summarise with "
        "python -m bench.profile_top FILE)")  # fmt: skip
    args = parser.parse_args(argv)
    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.flush_ms = [int(v) for v in str(args.flush_ms).split(",") if v]
    args.scenarios = [s for s in args.scenarios.split(",") if s]
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    if args.redis_db in range(5):
        parser.error("--redis-db 0-4 are used by development and tests; pick another")
    if not args.flush_ms:
        parser.error("--flush-ms needs at least one value")
    return args


class AssistantBench:
    """What the scenarios share: options, server environment, users, load generator."""

    def __init__(self, args, env, database, log_dir, users, client, fake, record, redis) -> None:
        self.args = args
        self.env = env
        self.database = database
        self.log_dir = log_dir
        self.users = users
        self.client = client
        self.fake = fake
        self.record = record
        self.redis = redis  # the benchmark's Redis database (the channel layer's)
        self.profile_dir: Path | None = None

    def take_users(self, count: int) -> list[dict]:
        """``count`` users no scenario has used yet (each asks in their own conversation)."""
        if count > len(self.users):
            raise RuntimeError(f"{count} users wanted, {len(self.users)} left")
        taken, self.users = self.users[:count], self.users[count:]
        return [dict(user) for user in taken]


def users_needed(args) -> int:
    wanted = {
        "steps": 1,
        "sequential": len(args.flush_ms) * (args.seq_answers + args.seq_warmup),
        "concurrent": args.concurrent_n,
        "stalled": 2,
        "stop": args.stop_tries,
    }
    return sum(wanted[s] for s in args.scenarios) + 10


def main(argv=None) -> int:
    args = parse_args(argv)
    wait_until_quiet(args.wait_quiet)
    busy = prepare_run("bench.assistant")
    run = BenchRun(
        "bench.assistant",
        suffix=f"-assistant{'-quick' if args.quick else ''}",
        database=f"{args.database_prefix}_{os.getpid()}",
        redis_db=args.redis_db,
        progress=assistant_report.progress_line,
    )
    with run:
        env = run.start(busy, vars(args))
        users = setup_users(args, run.record)
        from assistant.testing.fake_upstream_process import FakeUpstreamProcess

        fake = FakeUpstreamProcess()
        run.cleanups.append(fake.stop)
        fake.start()
        client = LineChild([sys.executable, "-m", "bench.assistant_client"], env)
        run.cleanups.insert(0, client.close)
        bench = AssistantBench(
            args, env, run.database, run.log_dir, users, client, fake, run.record, run.redis
        )
        if args.profile:
            bench.profile_dir = RESULTS_DIR / f"{run.stamp}-assistant-profiles"
            bench.profile_dir.mkdir(exist_ok=True)
        if "steps" in args.scenarios:
            steps(bench)
        if "sequential" in args.scenarios:
            for flush_ms in args.flush_ms:
                sequential(bench, flush_ms)
        for name, scenario in (("concurrent", concurrent), ("stalled", stalled), ("stop", stop)):
            if name in args.scenarios:
                scenario(bench)
        run.record({"kind": "end", "elapsed_minutes": round(run.elapsed_minutes(), 1)})
    elapsed = run.elapsed_minutes()
    if any(r.get("kind") == "machine" for r in run.records):
        generated = assistant_report.render(run.records, run.relative_path, elapsed)
        print("\n" + generated)
        if not (run.interrupted or args.quick or args.no_docs):
            assistant_report.update_docs(DOCS, generated)
            print(f"bench.assistant: tables written to {DOCS.relative_to(BASE_DIR)}")
    run.remove_logs()
    print(f"bench.assistant: raw results in {run.relative_path}; {elapsed:.1f} min")
    return 1 if run.interrupted else 0


def wait_until_quiet(seconds: float, busy_percent: float = 25) -> None:
    """Wait (up to ``seconds``) until the machine has been under ``busy_percent`` for 5 s."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        busy = machine_busy_percent(5)
        if busy < busy_percent:
            return
        print(f"bench.assistant: the machine is {busy:.0f}% busy; waiting", flush=True)


def setup_users(args, record) -> list[dict]:
    """Users with sessions and a history of conversations; each asks in their latest."""
    count = users_needed(args)
    begun = time.monotonic()
    user_ids = data.create_users(count, prefix="assistant")
    cookies = data.create_sessions(user_ids)
    print(f"bench.assistant: {count:,} users and sessions in {time.monotonic() - begun:.1f}s")
    begun = time.monotonic()
    conversations = max(args.history_conversations, count)
    history = assistant_data.seed_history(user_ids, conversations, args.history_turns)
    record({"kind": "history", **history, "seconds": round(time.monotonic() - begun, 1)})
    latest = assistant_data.latest_conversations(user_ids)
    return [
        {"cookie": cookie, "conversation": latest[uid][0], "after": latest[uid][1]}
        for uid, cookie in zip(user_ids, cookies, strict=True)
    ]


if __name__ == "__main__":
    sys.exit(main())
