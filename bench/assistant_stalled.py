"""The assistant benchmark's stalled tab: a viewer that never reads.

One tab opens a conversation's stream and then reads nothing. Meanwhile, in that
conversation:

1. an answer of ``--stall-tokens`` tokens streams to the asking POST (read normally): the
   server's RSS and the kernel's send queue of the stalled connection are sampled;
2. ``--stall-flood-asks`` questions of ``--stall-flood-chars`` characters are asked (each
   a ``turn`` event carrying its question), enough bytes to fill the kernel's buffers and
   then ``SSE_BUFFER_EVENTS`` events: the server must give up on the tab (end its stream)
   rather than hold more.

Then the tab reads what was kept for it, and resumes from its last event id, as
``EventSource`` would: every answer's text must come out equal to the stored text.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from bench import assistant_data
from bench.assistant_probes import SendQueueProbe
from bench.assistant_scenarios import SLACK, cpu, profiling, sampled, start_server
from bench.assistant_tokens import check_answer, script

if TYPE_CHECKING:
    from bench.assistant import AssistantBench


def slope_mb_per_minute(samples: list[tuple[float, int]]) -> float | None:
    """Least-squares slope of RSS (kB) against time (s), in MB per minute."""
    if len(samples) < 2:
        return None
    n = len(samples)
    mean_t = sum(t for t, _ in samples) / n
    mean_r = sum(r for _, r in samples) / n
    var = sum((t - mean_t) ** 2 for t, _ in samples)
    cov = sum((t - mean_t) * (r - mean_r) for t, r in samples)
    return round(cov / var * 60 / 1024, 3) if var else None


def rss_figures(sampler, start: float, end: float) -> dict:
    series = [(t, kb) for t, _cpu, kb in sampler.samples if start <= t <= end and kb]
    values = [kb for _, kb in series]
    if not values:
        return {}
    return {
        "start": values[0],
        "end": values[-1],
        "max": max(values),
        "min": min(values),
        "samples": len(values),
        "slope_mb_per_minute": slope_mb_per_minute(series),
        "series": values[:: max(1, len(values) // 60)],
    }


def stalled(bench: AssistantBench) -> None:
    args = bench.args
    warm, user = bench.take_users(2)
    bench.fake.reset()
    server = start_server(bench, "stalled", args.stall_flush_ms, args.stall_buffer_events)
    where = {"port": server.port, "cookie": user["cookie"], "conversation": user["conversation"]}
    where |= {"upstream": bench.fake.url}
    probe = SendQueueProbe(server.port)
    try:
        # One short answer first (another user's), so imports and pools are in place.
        warm_where = where | {"cookie": warm["cookie"], "conversation": warm["conversation"]}
        background(bench, {"cmd": "ask", **warm_where, "script": script(20, 0.005)}, "warm-up")
        with (
            sampled(bench, [server]) as sampler,
            profiling(bench, {"server": server.pid}, "stalled"),
        ):
            opened = bench.client.request(
                {"cmd": "stall_open", **where, "after": user["after"]}, timeout=SLACK
            )
            probe.watch(opened["local_port"])
            time.sleep(1)
            t1 = time.time()
            the_script = script(args.stall_tokens, args.stall_token_delay)
            long = background(bench, {"cmd": "ask", **where, "script": the_script}, "answer")
            t2 = time.time()
            flood = background(
                bench,
                {
                    "cmd": "flood", **where, "asks": args.stall_flood_asks,
                    "concurrency": 8, "question_chars": args.stall_flood_chars,
                    "script": script(1, 0),
                },
                "flood",
            )  # fmt: skip
            t3 = time.time()
        last = max([long["answer"], *flood["answers"]])
        drained = bench.client.request(
            {"cmd": "stall_drain", **where, "after": user["after"], "until": last},
            timeout=SLACK * 3,
        )
    finally:
        probe.stop()
        server.stop()
    bench.fake.reset()  # the flood's request bodies
    stored = assistant_data.answers([long["answer"], *flood["answers"]])
    long_row = stored.get(long["answer"], {})
    views = drained["views"]
    # [tokens, text crc, status, position] of each answer, as the tab has it.
    differ = [
        {"answer": a, "stored_position": row["position"], "tab": views.get(str(a))}
        for a, row in sorted(stored.items())
        if (views.get(str(a)) or [0, None, None])[1:3] != [row["crc"], row["status"]]
    ]
    bench.record(
        {
            "kind": "assistant-stalled",
            "tokens": args.stall_tokens,
            "token_delay": args.stall_token_delay,
            "flush_ms": args.stall_flush_ms,
            "buffer_events": args.stall_buffer_events or 1000,
            "answer_seconds": long["seconds"],
            "asker": {
                "tokens": long["tokens"],
                "status": long["status"],
                "errors": long["errors"],
                "text_equals_stored": long["crc"] == long_row.get("crc"),
                "token_latency": long["token_latency"],
            },
            "stored_status": long_row.get("status"),
            "stored_text_problem": check_answer(long_row.get("text", ""), args.stall_tokens),
            "stored_characters": long_row.get("position"),
            "rss_kb": rss_figures(sampler, t1, t2),
            "kernel_send_queue_max": probe.max_between(t1, t2),
            "flood": {
                "asks": args.stall_flood_asks,
                "question_chars": args.stall_flood_chars,
                "seconds": flood["seconds"],
                "complete": flood["complete"],
                "errors": flood["errors"],
                "rss_kb": rss_figures(sampler, t2, t3),
                "kernel_send_queue_max": probe.max_between(t2, t3),
            },
            "held": drained["held"],
            "answers_expected": len(stored),
            "answers_whole_after_resume": len(stored) - len(differ),
            "answers_differing_from_stored": len(differ),
            "repeated_deltas_dropped": drained["repeated"],
            "differing": differ[:20],
            "tab_errors": drained["errors"],
            "cpu_percent": cpu(sampler, t1, t2),
        }
    )


def background(bench: AssistantBench, command: dict, what: str) -> dict:
    """Start a load-generator command that runs in the background; poll it to its end."""
    bench.client.request(command, timeout=SLACK)
    count = len(command["script"]["tokens"]) * command.get("asks", 1)
    deadline = time.time() + count * command["script"]["token_delay"] * 3 + SLACK * 3
    every = 5 if what == "answer" else 1
    while True:
        time.sleep(every)
        progress = bench.client.request({"cmd": "poll"}, timeout=SLACK)
        if progress["done"]:
            return progress["result"]
        if time.time() > deadline:
            raise RuntimeError(f"the stalled scenario's {what} did not finish in time")
        if what == "answer":
            print(f"  stalled tab: {progress['tokens']:,} tokens streamed to the asker", flush=True)
