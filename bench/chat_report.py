"""The chat benchmark's tables, from its records; ``python -m bench.chat_report FILE`` too.

Tables show medians over repeats (the worst loss); the JSONL file has every run.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict

from bench.machine import summary_line
from bench.report import NONE, fmt, median, table, worst

#: The issue's targets, judged on streamsite.
TARGET_P99_MS_AT_10 = 100
TARGET_DELIVERIES_AT_50 = 25_000
TARGET_IDLE_N = 10_000
TARGET_KB_PER_SOCKET = 40


def progress_line(item: dict) -> str:
    kind = item.get("kind")
    if kind == "chat-idle":
        return (
            f"  idle  {item['config']:<10} N={item['n']:<6} ready={item['ready']:<6} "
            f"open={item['open_after_hold']} {item['connects_per_second']} conn/s "
            f"{item['kb_per_socket']} KB/socket threads={item['threads_after']} "
            f"idle cpu={item['idle_cpu_percent']}%"
        )
    if kind == "chat-room":
        latency = item["latency_ms"]
        cpu = item["cpu_percent"]
        return (
            f"  room  {item['config']:<10} w={item['workers']} N={item['ready']}/{item['n']} "
            f"split={item['sockets_per_worker']} rate={item['rate']} sent={item['sent']} "
            f"p50={latency.get('p50')} p99={latency.get('p99')} max={latency.get('max')} ms "
            f"lost={item['lost']} ({item['loss_percent']}%) "
            f"deliveries/s={item['deliveries_per_second']} server={cpu['server']}% "
            f"({item['server_cpu_us_per_delivery']} us/delivery) client={cpu['client']}% "
            f"errors={item['errors']} ack p50/max="
            + ",".join(
                f"{a.get('p50')}/{a.get('max')}" for a in item.get("ack_latency_ms", []) if a
            )
        )
    return f"  {kind}"


def idle_table(records: list[dict]) -> str:
    rows = []
    for record in (r for r in records if r.get("kind") == "chat-idle"):
        rows.append(
            [
                record["config"],
                fmt(record["n"]),
                f"{fmt(record['ready'])} / {fmt(record['open_after_hold'])}",
                fmt(record["failed"]),
                fmt(record["connects_per_second"]),
                f"{record['rss_before_kb'] / 1024:,.0f}→{record['rss_after_kb'] / 1024:,.0f}",
                fmt(record["kb_per_socket"], 1),
                f"{record['threads_before']}→{record['threads_after']}",
                fmt(record["idle_cpu_percent"], 1),
                fmt(sum(record["pg_connections"].values())),
            ]
        )
    if not rows:
        return ""
    header = [
        "config", "sockets", "ready / open after hold", "failed", "connects/s",
        "RSS MB before→held", "KB/socket", "threads", "idle CPU %", "PG conns",
    ]  # fmt: skip
    return table(header, rows)


def room_groups(records: list[dict]) -> dict[tuple, list[dict]]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for record in records:
        if record.get("kind") == "chat-room":
            groups[(record["workers"], record["rate"], record["config"])].append(record)
    return dict(sorted(groups.items(), key=lambda item: (item[0][0], item[0][1])))


def room_table(records: list[dict]) -> str:
    rows = []
    for (workers, rate, config), runs in room_groups(records).items():
        first = runs[0]
        split = "/".join(str(v) for v in first["sockets_per_worker"]) if workers > 1 else NONE
        errors = sum(sum(r["errors"].values()) for r in runs)
        rows.append(
            [
                config,
                fmt(workers),
                split,
                f"{fmt(median(runs, 'ready'))}/{fmt(first['n'])}",
                f"{fmt(rate)} for {fmt(first['seconds'])} s",
                f"{fmt(median(runs, 'sent'))}",
                fmt(median(runs, "latency_ms.p50"), 1),
                fmt(median(runs, "latency_ms.p99"), 1),
                fmt(median(runs, "latency_ms.max"), 1),
                f"{fmt(worst(runs, 'lost'))} ({fmt(worst(runs, 'loss_percent'), 2)} %)",
                f"{fmt(median(runs, 'deliveries_per_second'))} "
                f"({fmt(first['target_deliveries_per_second'])})",
                fmt(median(runs, "cpu_percent.server")),
                fmt(median(runs, "server_cpu_us_per_delivery")),
                fmt(median(runs, "cpu_percent.client")),
                fmt(median(runs, "cpu_percent.redis")),
                fmt(median(runs, "cpu_percent.postgres")),
                fmt(median(runs, "connects_per_second")),
                fmt(len(runs)),
                fmt(errors),
            ]
        )
    if not rows:
        return ""
    header = [
        "config", "workers", "sockets per worker", "ready", "rate (msg/s)", "sent",
        "p50 ms", "p99 ms", "max ms", "lost (%)", "deliveries/s (target)", "server CPU %",
        "server µs/delivery", "client CPU %", "Redis CPU %", "PG CPU %", "connects/s",
        "runs", "send errors",
    ]  # fmt: skip
    return table(header, rows)


def ratio_table(records: list[dict]) -> str:
    groups = room_groups(records)
    rows = []
    for (workers, rate, config), runs in groups.items():
        if config != "streamsite" or (workers, rate, "baseline") not in groups:
            continue
        base = groups[(workers, rate, "baseline")]

        def ratio(path: str, runs=runs, base=base) -> str:
            a, b = median(runs, path), median(base, path)
            return f"{a / b:.2f}" if a is not None and b else NONE

        rows.append(
            [
                fmt(workers),
                fmt(rate),
                ratio("deliveries_per_second"),
                ratio("latency_ms.p50"),
                ratio("latency_ms.p99"),
                ratio("server_cpu_us_per_delivery"),
            ]
        )
    idle = {r["config"]: r for r in records if r.get("kind") == "chat-idle"}
    if "streamsite" in idle and "baseline" in idle:
        a, b = idle["streamsite"]["kb_per_socket"], idle["baseline"]["kb_per_socket"]
        rows.append(["1", "idle", NONE, NONE, NONE, f"KB/socket {a / b:.2f}" if a and b else NONE])
    if not rows:
        return ""
    header = [
        "workers", "rate", "deliveries/s", "p50 latency", "p99 latency",
        "server CPU per delivery",
    ]  # fmt: skip
    return table(header, rows)


def targets(records: list[dict]) -> str:
    groups = room_groups(records)
    rows = []
    at10 = groups.get((1, 10, "streamsite"))
    if at10:
        p99, lost = median(at10, "latency_ms.p99"), worst(at10, "lost")
        met = p99 is not None and p99 < TARGET_P99_MS_AT_10 and lost == 0
        n = at10[0]["n"]
        rows.append(
            [
                f"room of {n:,} at 10 msg/s: nothing lost, p99 < 100 ms",
                f"p99 {fmt(p99, 1)} ms, lost {fmt(lost)}",
                "met" if met and n >= 1000 else ("**not met**" if not met else "met (small N)"),
            ]
        )
    at50 = groups.get((1, 50, "streamsite"))
    if at50:
        rate, lost = median(at50, "deliveries_per_second"), worst(at50, "lost")
        met = rate is not None and rate >= TARGET_DELIVERIES_AT_50 and lost == 0
        rows.append(
            [
                "at 50 msg/s one process delivers ≥ 25,000/s, nothing lost",
                f"{fmt(rate)}/s, lost {fmt(lost)}",
                "met" if met else "**not met**",
            ]
        )
    idle = [r for r in records if r.get("kind") == "chat-idle" and r["config"] == "streamsite"]
    if idle:
        record = idle[0]
        kb = record["kb_per_socket"]
        met = (
            record["ready"] >= TARGET_IDLE_N
            and record["open_after_hold"] >= TARGET_IDLE_N
            and kb is not None
            and kb <= TARGET_KB_PER_SOCKET
        )
        rows.append(
            [
                "10,000 idle sockets per process at ≤ 40 KB each",
                f"{record['ready']:,} held, {fmt(kb, 1)} KB/socket",
                "met" if met else "**not met**",
            ]
        )
    return table(["target (streamsite, 1 process)", "measured", "verdict"], rows) if rows else ""


def render(records: list[dict], results_path: str, elapsed_minutes: float | None = None) -> str:
    machine = next(r for r in records if r.get("kind") == "machine")
    options = next((r for r in records if r.get("kind") == "options"), {})
    parts = [
        f"Chat benchmark, {machine['date']}"
        + (f", {elapsed_minutes:.1f} min" if elapsed_minutes else "")
        + f"{' (--quick)' if options.get('quick') else ''}. Raw: `{results_path}`.",
        "",
        "Machine: " + summary_line(machine),
        "",
    ]
    for title, body in (
        ("Targets", targets(records)),
        ("Idle sockets (one process)", idle_table(records)),
        ("Room fan-out", room_table(records)),
        ("streamsite ÷ baseline (medians)", ratio_table(records)),
    ):
        if body:
            parts += [f"#### {title}", "", body, ""]
    return "\n".join(parts)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file")
    args = parser.parse_args(argv)
    with open(args.file) as file:
        records = [json.loads(line) for line in file if line.strip()]
    print(render(records, args.file))


if __name__ == "__main__":
    main()
