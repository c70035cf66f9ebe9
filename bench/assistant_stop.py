"""The assistant benchmark's Stop scenario: Stop POSTed to the process not generating.

Two single-worker servers on two ports share PostgreSQL and Redis. Each try asks on one,
waits for a few tokens, and POSTs Stop (with the position shown) to the other; the load
generator takes the time just before sending the Stop, and the fake upstream records, on
the same clock, when the generating server closed its request. Tries alternate which
server generates.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from bench import assistant_data
from bench.assistant_scenarios import SLACK, cpu, profiling, sampled, start_server
from bench.assistant_sequential import summary
from bench.assistant_tokens import script

if TYPE_CHECKING:
    from bench.assistant import AssistantBench

#: Stop tries per load-generator command: a progress line after each batch.
STOP_BATCH = 10


def stop(bench: AssistantBench) -> None:
    args = bench.args
    users = bench.take_users(args.stop_tries)
    bench.fake.reset()
    # A long answer, so only the Stop can end it.
    the_script = script(args.stop_tokens, args.stop_token_delay)
    servers = [start_server(bench, f"stop-{name}", args.flush_ms[0]) for name in ("a", "b")]
    tries: list[dict] = []
    try:
        with sampled(bench, servers) as sampler:
            started = time.time()
            pids = {"a": servers[0].pid, "b": servers[1].pid}
            with profiling(bench, pids, "stop"):
                for first in range(0, len(users), STOP_BATCH):
                    batch = users[first : first + STOP_BATCH]
                    reply = bench.client.request(
                        {
                            "cmd": "stop_tries", "upstream": bench.fake.url,
                            "ports": [s.port for s in servers], "users": batch,
                            "script": the_script, "show_tokens": args.stop_after_tokens,
                        },
                        timeout=SLACK + len(batch) * 10,
                    )  # fmt: skip
                    tries += reply["tries"]
                    known = sorted(
                        t["stop_to_disconnect_ms"] for t in tries if t["stop_to_disconnect_ms"]
                    )
                    print(
                        f"  stop: {len(tries)} tries, {len(known)} disconnects seen, "
                        f"p50 {known[len(known) // 2] if known else '-'} ms",
                        flush=True,
                    )
            ended = time.time()
    finally:
        for server in servers:
            server.stop()
    bench.record(
        {
            "kind": "assistant-stop",
            "tries": len(tries),
            "servers": 2,
            "stop_after_tokens": args.stop_after_tokens,
            "stop_to_disconnect": summary(_seconds(tries, "stop_to_disconnect_ms")),
            "stop_http": summary(_seconds(tries, "stop_http_ms")),
            "stop_to_done_event": summary(_seconds(tries, "stop_to_done_event_ms")),
            "stop_to_disconnect_ms": [t["stop_to_disconnect_ms"] for t in tries],
            "problems": problems(tries),
            "cpu_percent": cpu(
                sampler, started, ended, ("server", "server1", "upstream", "postgres", "redis")
            ),
        }
    )


def _seconds(tries: list[dict], name: str) -> list[float]:
    return [t[name] / 1000 for t in tries if t[name] is not None]


def problems(tries: list[dict]) -> dict[str, int]:
    """What went wrong, by kind: the upstream not cut, the text not cut where shown."""
    stored = assistant_data.answers([t["answer"] for t in tries if t["answer"]])
    found: dict[str, int] = {}
    for attempt in tries:
        row = stored.get(attempt["answer"])
        what = None
        if attempt["error"] or row is None:
            what = f"ask failed: {attempt['error']}"
        elif not attempt["upstream_disconnected"]:
            what = "the upstream never saw a disconnect"
        elif row["status"] != "stopped":
            what = f"stored {row['status']}"
        elif row["position"] != attempt["position_shown"]:
            what = "stored text not cut where the client stopped"
        elif attempt["stream_status"] != "stopped":
            what = "the asking stream did not end stopped"
        if what:
            found[what] = found.get(what, 0) + 1
    return found
