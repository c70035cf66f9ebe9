"""Turn a run's records into Markdown tables, check the targets, update docs/benchmarks.md.

``python -m bench.report bench/results/<time>.jsonl`` prints the tables of a past run.
"""

from __future__ import annotations

import re
import statistics
from collections import defaultdict
from pathlib import Path

from bench.machine import summary_line

BEGIN = "<!-- bench:results:begin -->"
END = "<!-- bench:results:end -->"
#: The configuration the targets are judged on: streamsite on the production server.
PRODUCTION = "streamsite-uvicorn"
#: The plain Starlette SSE broadcaster (``bench.floor_sse``), measured as the floor.
FLOOR = "floor-starlette"
#: Shown where there is no value (an en dash), and the multiplication sign.
NONE = "\u2013"
TIMES = "\u00d7"


def get(record: dict, path: str):
    value = record
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def median(records: list[dict], path: str):
    values = [v for v in (get(r, path) for r in records) if v is not None]
    return statistics.median(values) if values else None


def worst(records: list[dict], path: str):
    values = [v for v in (get(r, path) for r in records) if v is not None]
    return max(values) if values else None


def fmt(value, digits: int = 0) -> str:
    if value is None:
        return NONE
    if isinstance(value, float) and digits:
        return f"{value:,.{digits}f}"
    if isinstance(value, float) and abs(value) < 10 and value != int(value):
        return f"{value:.1f}"
    return f"{round(value):,}"


def mb(kb) -> str:
    return NONE if kb is None else f"{kb / 1024:,.0f}"


NUMERIC = re.compile(r"^[\d.,\s%→()/+\u2013-]*$")


def table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table; columns of figures are right-aligned, text columns left."""
    numeric = [all(NUMERIC.match(row[i]) for row in rows) for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join("---:" if right else "---" for right in numeric) + "|")
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def fanout_groups(records: list[dict]) -> dict[tuple, list[dict]]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for record in records:
        if record.get("kind") == "fanout":
            mode = record.get("mode", "service")
            key = (record["config"], record["n"], record["rate"], record["publishers"], mode)
            groups[key].append(record)
    return groups


def limited_by(runs: list[dict]) -> str:
    """A hint at what saturated: the server's loop, the load generator, or the publisher."""
    server = median(runs, "cpu_percent.server") or 0
    client = median(runs, "cpu_percent.client") or 0
    rate, actual = runs[0]["rate"], median(runs, "publishes_per_second")
    if server >= 85:
        return "server"
    if client >= 85:
        return "client"
    if runs[0]["published"] > 1 and actual is not None and actual < 0.9 * rate:
        return "publisher"
    return NONE


def fanout_table(records: list[dict]) -> str:
    rows = []
    for (config, n, rate, publishers, mode), runs in fanout_groups(records).items():
        notes = []
        if mode == "layer-only":
            notes.append("layer only: no database writes")
        if mode == "floor":
            notes.append("the floor: a plain Starlette broadcaster")
        if publishers > 1:
            notes.append(f"{publishers} publishers")
        if (ended := worst(runs, "streams_ended_by_server")) and ended > 0:
            notes.append(f"{ended} streams ended by server")
        if (drops := worst(runs, "layer_drops_logged")) and drops > 0:
            notes.append(f"{drops} over-capacity logs")
        if any(r["stopped_by_deadline"] for r in runs):
            notes.append("publishing cut at time limit")
        rows.append(
            [
                config,
                fmt(n),
                fmt(median(runs, "ready")),
                f"{fmt(rate)} → {fmt(median(runs, 'publishes_per_second'), 1)}",
                f"{fmt(median(runs, 'published'))}/{runs[0]['count']}",
                fmt(median(runs, "latency_ms.p50"), 1),
                fmt(median(runs, "latency_ms.p99"), 1),
                fmt(median(runs, "latency_ms.max"), 1),
                fmt(worst(runs, "loss_percent"), 2),
                f"{fmt(median(runs, 'deliveries_per_second'))} ({fmt(runs[0]['ready'] * rate)})",
                fmt(median(runs, "cpu_percent.server")),
                fmt(median(runs, "cpu_percent.client")),
                fmt(median(runs, "cpu_percent.publishers")),
                fmt(median(runs, "cpu_percent.postgres")),
                f"{mb(median(runs, 'rss_before_kb'))}→{mb(median(runs, 'rss_peak_kb'))}",
                str(len(runs)),
                limited_by(runs),
                "; ".join(notes) or NONE,
            ]
        )
    header = [
        "server", "N", "ready", "pub/s target → actual", "published", "p50 ms", "p99 ms",
        "max ms", "loss % (worst)", "deliveries/s (target)", "server CPU %", "client CPU %",
        "publisher CPU %", "postgres CPU %", "server RSS MB before→peak", "runs",
        "limited by", "notes",
    ]  # fmt: skip
    return table(header, rows)


def idle_table(records: list[dict]) -> str:
    holds = {r["config"]: r for r in records if r.get("kind") == "hold" and r.get("warmed_up")}
    broadcasts: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for record in records:
        if record.get("kind") == "broadcast" and record.get("mode") != "layer-only":
            broadcasts[record["config"], record.get("mode", "service")].append(record)
    rows = []
    for (config, mode), runs in sorted(broadcasts.items()):
        held = holds.get(config)
        if held is None:
            continue
        rows.append(
            [
                config,
                mode,
                f"{fmt(held['ready'])} of {fmt(held['n'])}",
                fmt(held["connects_per_second"]),
                f"{mb(held['rss_before_kb'])} → {mb(held['rss_after_kb'])}",
                fmt(held["kb_per_stream"], 1),
                f"{held['threads_before']} → {held['threads_after']}",
                fmt(held["idle_cpu_percent"]),
                f"{fmt(median(runs, 'latency_ms.p50'))} / {fmt(median(runs, 'latency_ms.max'))}",
                fmt(median(runs, "service_call_ms.p50")),
                fmt(worst(runs, "loss_percent"), 2),
                str(len(runs)),
            ]
        )
    header = [
        "server", "broadcast as", "streams held", "connects/s", "server RSS MB empty → held",
        "KB/stream",
        "threads empty → held", "idle CPU %", "broadcast p50 / max ms", "publish call ms",
        "broadcast loss % (worst)", "broadcasts",
    ]  # fmt: skip
    return table(header, rows)


def pg_table(records: list[dict]) -> str:
    rows = []
    for record in records:
        if record.get("kind") == "hold":
            states = record["pg_connections"]
            detail = ", ".join(f"{count} {state}" for state, count in sorted(states.items()))
            rows.append(
                [record["config"], fmt(record["ready"]), fmt(sum(states.values())), detail or NONE]
            )
    return table(["server", "streams open", "PostgreSQL connections", "by state"], rows)


def export_table(records: list[dict]) -> str:
    rows = []
    for record in records:
        if record.get("kind") == "export":
            rows.append(
                [
                    record["config"],
                    f"{fmt(record['lines'])} of {fmt(record['rows'])}",
                    "yes" if record["complete"] else f"no ({record['failure']})",
                    fmt(record["seconds"], 1),
                    fmt(record["rows_per_second"]),
                    fmt(record["mb_per_second"], 1),
                    f"{mb(record['rss_before_kb'])} → {mb(record['rss_peak_kb'])}",
                    fmt(record["rss_growth_mb"], 1),
                    fmt(get(record, "cpu_percent.server")),
                    fmt(get(record, "cpu_percent.client")),
                ]
            )
    header = [
        "server", "rows received", "complete", "seconds", "rows/s", "MB/s",
        "server RSS MB before → peak", "growth MB", "server CPU %", "client CPU %",
    ]  # fmt: skip
    return table(header, rows)


def targets(records: list[dict], config: str = PRODUCTION) -> list[list[str]]:
    """The issue's targets, judged on ``config``: rows of [target, measured, verdict].

    A target is judged only on a measurement at its own scale; a smaller one (``--quick``)
    is shown as "not judged".
    """
    groups = fanout_groups(records)
    holds = [r for r in records if r.get("kind") == "hold" and r["config"] == config]
    exports = [r for r in records if r.get("kind") == "export" and r["config"] == config]
    rows = [_latency_target(groups.get((config, 1000, 10, 1, "service")))]
    at_100 = sorted(
        key
        for key in groups
        if key[0] == config and key[2] == 100 and key[3] == 1 and key[4] == "service"
    )
    rows += [_throughput_target(groups[key]) for key in at_100] or [
        [THROUGHPUT, "not measured", NONE]
    ]
    rows.append(_idle_target([h for h in holds if h["warmed_up"]]))
    announcements = [
        r
        for r in records
        if r.get("kind") == "broadcast"
        and r["config"] == config
        and r.get("mode") == "announcement"
    ]
    rows.append(_announcement_target(announcements))
    rows.append(_pg_target([h for h in holds if h["n"] >= 1000] or holds))
    rows.append(_export_target(exports))
    return rows


LATENCY = "1,000 streams at 10/s lose nothing, p99 < 100 ms"
THROUGHPUT = "at 100/s one process delivers ≥ 40,000 events/s, loses nothing"
IDLE = "10,000 idle streams per process at ≤ 40 KB each"
PG = "1,000 idle streams hold ≤ 5 PostgreSQL connections"
EXPORT = "a 1,000,000-row export grows memory < 50 MB"


def _latency_target(runs: list[dict] | None) -> list[str]:
    if not runs:
        return [LATENCY, "not measured (needs N = 1000 at 10/s)", NONE]
    loss, p99 = worst(runs, "loss_percent"), median(runs, "latency_ms.p99")
    measured = f"loss {fmt(loss, 2)} % (worst of {len(runs)}), p99 {fmt(p99, 1)} ms (median)"
    if p99 is None:
        return [LATENCY, measured, verdict(False, "nothing delivered")]
    side = "under" if p99 < 100 else "over"
    margin = f"p99 {fmt(abs(100 - p99), 1)} ms {side} the limit, loss {fmt(loss, 2)} %"
    return [LATENCY, measured, verdict(loss == 0 and p99 < 100, margin)]


def _throughput_target(runs: list[dict]) -> list[str]:
    n = runs[0]["n"]
    rate, loss = median(runs, "deliveries_per_second") or 0, worst(runs, "loss_percent")
    offered = (median(runs, "publishes_per_second") or 0) * runs[0]["ready"]
    measured = (
        f"N = {n:,}: {fmt(rate)} deliveries/s, loss {fmt(loss, 2)} %; "
        f"{fmt(median(runs, 'publishes_per_second'), 1)} publishes/s offered {fmt(offered)} "
        f"events/s (limited by: {limited_by(runs)})"
    )
    name = f"{THROUGHPUT} (N = {n:,})"
    if n * 100 < 40000:
        return [name, measured, f"not judged: N = {n} cannot ask for 40,000/s"]
    margin = f"{fmt(rate / 40000, 2)}{TIMES} the 40,000/s asked, loss {fmt(loss, 2)} %"
    return [name, measured, verdict(rate >= 40000 and loss == 0, margin)]


def _idle_target(holds: list[dict]) -> list[str]:
    if not holds:
        return [IDLE, "not measured", NONE]
    held = holds[-1]
    kb = held["kb_per_stream"] or 0
    measured = f"{fmt(held['ready'])} of {fmt(held['n'])} held, {fmt(kb, 1)} KB/stream"
    if held["n"] < 10000:
        return [IDLE, measured, "not judged: fewer than 10,000 streams"]
    margin = f"{fmt(kb, 1)} KB is {fmt(kb / 40, 2)}{TIMES} the 40 KB allowed"
    return [IDLE, measured, verdict(held["ready"] >= 10000 and kb <= 40, margin)]


ANNOUNCEMENT = "a notification to every user reaches 10,000 open streams: p50 < 0.5 s, max < 1 s"


def _announcement_target(runs: list[dict]) -> list[str]:
    if not runs:
        return [ANNOUNCEMENT, "not measured", NONE]
    p50, top = median(runs, "latency_ms.p50"), median(runs, "latency_ms.max")
    loss = worst(runs, "loss_percent")
    measured = (
        f"{fmt(runs[0]['ready'])} streams: p50 {fmt(p50)} ms, max {fmt(top)} ms (medians of "
        f"{len(runs)}), loss {fmt(loss, 2)} %"
    )
    if runs[0]["ready"] < 10000:
        return [ANNOUNCEMENT, measured, "not judged: fewer than 10,000 streams"]
    met = p50 is not None and p50 < 500 and top < 1000 and loss == 0
    return [ANNOUNCEMENT, measured, verdict(met, f"p50 {fmt(p50)} ms, max {fmt(top)} ms")]


def _pg_target(holds: list[dict]) -> list[str]:
    if not holds:
        return [PG, "not measured", NONE]
    held = holds[0]
    count = sum(held["pg_connections"].values())
    measured = f"{count} connections with {fmt(held['ready'])} streams open"
    if held["n"] < 1000:
        return [PG, measured, "not judged: fewer than 1,000 streams"]
    return [PG, measured, verdict(count <= 5, f"{count} vs 5 allowed")]


def _export_target(exports: list[dict]) -> list[str]:
    if not exports:
        return [EXPORT, "not measured", NONE]
    export = exports[-1]
    growth = export["rss_growth_mb"]
    measured = (
        f"+{fmt(growth, 1)} MB over {fmt(export['lines'])} rows "
        f"at {fmt(export['rows_per_second'])} rows/s"
    )
    if export["rows"] < 1_000_000:
        return [EXPORT, measured, "not judged: fewer than 1,000,000 rows"]
    met = export["complete"] and growth < 50
    return [EXPORT, measured, verdict(met, f"{fmt(growth, 1)} MB of the 50 MB allowed")]


def other_targets(records: list[dict]) -> str:
    """The same targets' verdicts for every other configuration measured."""
    # The floor (``floor-starlette``) is a yardstick, not a candidate: no targets.
    others = sorted({r["config"] for r in records if "config" in r} - {PRODUCTION, FLOOR})
    if not others:
        return ""
    verdicts = {config: {row[0]: row[2] for row in targets(records, config)} for config in others}
    names = list(dict.fromkeys(name for by_name in verdicts.values() for name in by_name))
    rows = [[name, *(verdicts[config].get(name, NONE) for config in others)] for name in names]
    return "The same targets on the other configurations:\n\n" + table(["target", *others], rows)


def verdict(met: bool, margin: str) -> str:
    return f"**met**: {margin}" if met else f"**missed**: {margin}"


def render(records: list[dict], machine: dict, options: dict, results_path: str) -> str:
    """All tables as Markdown, with the machine and the run's options."""
    from bench.report_compare import floor_table, steady_table  # they build on this module

    mode = (
        "quick smoke run (small N: not comparable with the targets)"
        if options.get("quick")
        else "full run"
    )
    parts = [
        f"Run: {mode}, {machine['date']}, {options.get('elapsed_minutes', '?')} min; "
        f"raw data: `{results_path}`.",
        "",
        f"Machine: {summary_line(machine)}",
        "",
        f"### Targets (judged on {PRODUCTION}: streamsite on the production server, one process)",
        "",
        table(["target", "measured", "verdict"], targets(records)),
        "",
        other_targets(records),
        "",
        "### (a) Fan-out: N connected streams, publishes at a fixed rate",
        "",
        fanout_table(records),
        "",
        "### (a2) The server alone against the floor (a plain Starlette SSE broadcaster)",
        "",
        floor_table(records) or "Not measured in this run.",
        "",
        "### (a3) Steady state: latency per window of publishing",
        "",
        steady_table(records) or "Not measured in this run.",
        "",
        "### (b) Idle streams held by one process, then one broadcast to all of them",
        "",
        idle_table(records),
        "",
        "### (c) PostgreSQL connections while streams are open (after every connect phase)",
        "",
        pg_table(records),
        "",
        "### (d) NDJSON export through the server",
        "",
        export_table(records),
    ]
    return "\n".join(parts) + "\n"


def update_docs(path: Path, generated: str, begin: str = BEGIN, end: str = END) -> None:
    """Replace the generated part of docs/benchmarks.md (between the markers)."""
    text = path.read_text() if path.exists() else f"# Benchmarks\n\n{begin}\n{end}\n"
    if begin not in text or end not in text:
        text = text.rstrip() + f"\n\n{begin}\n{end}\n"
    head, _, rest = text.partition(begin)
    _, _, tail = rest.partition(end)
    path.write_text(f"{head}{begin}\n{generated}{end}{tail}")


def main(argv=None) -> None:
    import argparse
    import json

    parser = argparse.ArgumentParser(description="Print the tables of a past run.")
    parser.add_argument("results", help="a bench/results/*.jsonl file")
    args = parser.parse_args(argv)
    with open(args.results) as file:
        records = [json.loads(line) for line in file if line.strip()]
    machine = next(r for r in records if r.get("kind") == "machine")
    options = next((r for r in records if r.get("kind") == "options"), {})
    print(render(records, machine, {"quick": options.get("quick")}, args.results))


if __name__ == "__main__":
    main()
