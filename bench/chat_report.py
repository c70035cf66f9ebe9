"""The chat benchmark's tables, from its records; ``python -m bench.chat_report FILE`` too.

Tables show medians over repeats (the worst loss); the JSONL file has every run.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict

from bench.machine import summary_line
from bench.report import NONE, fmt, mb, median, table, worst
from bench.report_compare import WINDOW_HEADER, floor_verdict, window_cells

#: The issue's targets, judged on streamsite.
TARGET_P99_MS_AT_10 = 100
TARGET_DELIVERIES_AT_50 = 25_000
TARGET_P99_MS_AT_50 = 250
TARGET_IDLE_N = 10_000
TARGET_KB_PER_SOCKET = 40


def progress_line(item: dict) -> str:
    kind = item.get("kind")
    if kind == "chat-bigroom":
        latency = item["message_latency_ms"]
        return (
            f"  bigroom {item['config']:<10} N={item['n']} ready={item['ready']} "
            f"refused={item['refused']} closed={item['closed_after_join']} "
            f"{item['joins_per_second']} joins/s {item['kb_per_socket']} KB/socket "
            f"idle cpu={item['idle_cpu_percent']}% frames while joining="
            f"{item['frames_while_joining']} message: {item['message_delivered']}/"
            f"{item['message_expected']} p50={latency.get('p50')} max={latency.get('max')} ms"
        )
    if kind == "chat-idle":
        return (
            f"  idle  {item['config']:<10}{_deflate(item)} N={item['n']:<6} "
            f"ready={item['ready']:<6} "
            f"open={item['open_after_hold']} {item['connects_per_second']} conn/s "
            f"{item['kb_per_socket']} KB/socket threads={item['threads_after']} "
            f"idle cpu={item['idle_cpu_percent']}%"
        )
    if kind in ("chat-room", "chat-soak"):
        latency = item["latency_ms"]
        cpu = item["cpu_percent"]
        return (
            f"  {'soak' if kind == 'chat-soak' else 'room'}  {item['config']:<10}{_deflate(item)} "
            f"w={item['workers']} "
            f"N={item['ready']}/{item['n']} "
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


def _deflate(item: dict) -> str:
    """How a record's sockets were compressed: `` deflate 1000/1000`` when offered."""
    if not item.get("compression"):
        return ""
    return f" deflate {item.get('compressed_sockets')}/{item['ready']}"


def config_name(record: dict) -> str:
    return record["config"] + (" + deflate" if record.get("compression") else "")


def idle_table(records: list[dict]) -> str:
    rows = []
    for record in (r for r in records if r.get("kind") == "chat-idle"):
        rows.append(
            [
                config_name(record),
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
            key = (record["workers"], record["rate"], config_name(record))
            groups[key].append(record)
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


def ratio_table(records: list[dict], other: str) -> str:
    """streamsite ÷ ``other`` (baseline or floor), same workers, rate and compression."""
    groups = room_groups(records)
    rows = []
    for (workers, rate, config), runs in groups.items():
        if not config.startswith("streamsite"):
            continue
        twin = config.replace("streamsite", other, 1)
        if (workers, rate, twin) not in groups:
            continue
        base = groups[(workers, rate, twin)]

        def ratio(path: str, runs=runs, base=base) -> str:
            a, b = median(runs, path), median(base, path)
            return f"{a / b:.2f}" if a is not None and b else NONE

        rows.append(
            [
                fmt(workers),
                fmt(rate),
                "deflate" if "deflate" in config else "off",
                ratio("deliveries_per_second"),
                ratio("latency_ms.p50"),
                ratio("latency_ms.p99"),
                ratio("server_cpu_us_per_delivery"),
            ]
        )
    idle = {config_name(r): r for r in records if r.get("kind") == "chat-idle"}
    for config, record in idle.items():
        twin = idle.get(config.replace("streamsite", other, 1))
        if not config.startswith("streamsite") or twin is None:
            continue
        a, b = record["kb_per_socket"], twin["kb_per_socket"]
        kb = f"KB/socket {a / b:.2f}" if a and b else NONE
        deflate = "deflate" if record.get("compression") else "off"
        rows.append(["1", "idle", deflate, NONE, NONE, NONE, kb])
    big = {r["config"]: r for r in records if r.get("kind") == "chat-bigroom"}
    if "streamsite" in big and other in big:
        a, b = big["streamsite"], big[other]
        rows.append(
            [
                "1",
                f"bigroom {fmt(a['n'])}",
                "off",
                NONE,
                _ratio(a["message_latency_ms"].get("p50"), b["message_latency_ms"].get("p50")),
                NONE,
                f"KB/socket {_ratio(a['kb_per_socket'], b['kb_per_socket'])}",
            ]
        )
    if not rows:
        return ""
    header = [
        "workers", "rate", "compression", "deliveries/s", "p50 latency", "p99 latency",
        "server CPU per delivery",
    ]  # fmt: skip
    return table(header, rows)


def _ratio(a, b) -> str:
    return f"{a / b:.2f}" if a is not None and b else NONE


def soak_table(records: list[dict]) -> str:
    """Each soak: overall figures, then latency, memory and open files per window."""
    rows = []
    for record in (r for r in records if r.get("kind") == "chat-soak"):
        rows.append(
            [
                config_name(record),
                fmt(record["ready"]),
                f"{fmt(record['rate'])} for {fmt(record['seconds'])} s",
                fmt(record["sent"]),
                fmt(record["latency_ms"].get("p50"), 1),
                fmt(record["latency_ms"].get("p99"), 1),
                fmt(record["latency_ms"].get("max"), 1),
                f"{fmt(record['lost'])} ({fmt(record['loss_percent'], 2)} %)",
                *window_cells(record.get("latency_windows") or []),
            ]
        )
    if not rows:
        return ""
    header = [
        "config", "sockets", "rate (msg/s)", "sent", "p50 ms", "p99 ms", "max ms", "lost (%)",
        *WINDOW_HEADER,
    ]  # fmt: skip
    return table(header, rows)


def bigroom_table(records: list[dict]) -> str:
    rows = []
    for record in (r for r in records if r.get("kind") == "chat-bigroom"):
        latency = record["message_latency_ms"]
        rows.append(
            [
                record["config"],
                fmt(record["n"]),
                fmt(record["ready"]),
                f"{fmt(record['refused'])} / {fmt(record['closed_after_join'])}",
                fmt(record["joins_per_second"]),
                fmt(record["frames_while_joining"]),
                f"{mb(record['rss_before_kb'])}→{mb(record['rss_after_kb'])}",
                fmt(record["kb_per_socket"], 1),
                fmt(record["idle_cpu_percent"], 1),
                f"{fmt(record['message_delivered'])} of {fmt(record['message_expected'])}",
                f"{fmt(latency.get('p50'), 1)} / {fmt(latency.get('max'), 1)}",
            ]
        )
    if not rows:
        return ""
    header = [
        "config", "sockets", "joined", "refused / closed after", "joins/s",
        "frames while joining", "RSS MB before→joined", "KB/socket", "idle CPU %",
        "message reached", "message p50 / max ms",
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
        p99 = median(at50, "latency_ms.p99")
        met = p99 is not None and p99 < TARGET_P99_MS_AT_50 and lost == 0
        rows.append(
            [
                "room at 50 msg/s: p99 < 250 ms, nothing lost",
                f"p99 {fmt(p99, 1)} ms, lost {fmt(lost)}",
                "met" if met else "**not met**",
            ]
        )
        floor = groups.get((1, 50, "floor"))
        if floor:
            floor_rate = median(floor, "deliveries_per_second")
            verdict = floor_verdict(
                rate, floor_rate, median(floor, "target_deliveries_per_second"),
                median(at50, "server_cpu_us_per_delivery"),
                median(floor, "server_cpu_us_per_delivery"),
            )  # fmt: skip
            rows.append(
                [
                    "at 50 msg/s at least half the floor's deliveries/s",
                    f"{fmt(rate)}/s against the floor's {fmt(floor_rate)}/s",
                    verdict,
                ]
            )
    big = [r for r in records if r.get("kind") == "chat-bigroom" and r["config"] == "streamsite"]
    if big:
        record = big[0]
        n, latency = record["n"], record["message_latency_ms"]
        met = (
            record["refused"] == 0
            and record["closed_after_join"] == 0
            and (record["joins_per_second"] or 0) >= 500
            and (record["kb_per_socket"] or 1e9) <= TARGET_KB_PER_SOCKET
            and record["idle_cpu_percent"] < 5
            and record["message_delivered"] >= record["ready"]
            and (latency.get("max") or 1e9) < 500
        )
        rows.append(
            [
                f"{n:,} sockets in one room: none refused, ≥ 500 joins/s, ≤ 40 KB, "
                "< 5 % idle CPU, a message reaches all in < 0.5 s",
                f"{record['refused']} refused, {record['closed_after_join']} closed, "
                f"{fmt(record['joins_per_second'])} joins/s, {fmt(record['kb_per_socket'], 1)} "
                f"KB, {fmt(record['idle_cpu_percent'], 1)} % CPU, "
                f"{record['message_delivered']:,} got it, max {fmt(latency.get('max'), 1)} ms",
                ("met" if n >= TARGET_IDLE_N else "met (small N)") if met else "**not met**",
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
        ("One big room (one process)", bigroom_table(records)),
        ("Soak: one room, per window", soak_table(records)),
        (
            "streamsite ÷ floor (a plain websockets broadcast server; medians)",
            ratio_table(records, "floor"),
        ),
        ("streamsite ÷ baseline (medians)", ratio_table(records, "baseline")),
        (
            "streamsite ÷ streamsite-nometrics (what the metrics cost; medians)",
            ratio_table(records, "streamsite-nometrics"),
        ),
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
