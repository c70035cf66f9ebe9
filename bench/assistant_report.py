"""The assistant benchmark's tables, from its records; ``python -m bench.assistant_report FILE``.

``--docs`` also writes them into docs/benchmarks.md, between the ``bench:assistant`` markers
(the prose around them is written by hand).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench import report
from bench.machine import summary_line
from bench.report import NONE, fmt, table

BEGIN = "<!-- bench:assistant:begin -->"
END = "<!-- bench:assistant:end -->"
DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"

#: The targets of the assistant's issue.
TARGET_ADDED_TTFT_P50_MS = 5
TARGET_ADDED_TTFT_P95_MS = 15
TARGET_ADDED_CHUNK_P95_MS = 2
TARGET_STOP_P95_MS = 250
#: RSS growth while the stalled tab holds its stream, judged with the stream's end.
FLAT_RSS_MB = 5


def ms(value, digits: int = 1) -> str:
    return fmt(value, digits) if value is not None else NONE


def progress_line(item: dict) -> str:
    kind = item.get("kind")
    if kind == "end":
        return f"  end: {item['elapsed_minutes']} min"
    if kind == "history":
        return (
            f"  history  {item['conversations']:,} conversations, {item['answers']:,} answers "
            f"({item['answer_characters'] / 1e6:.1f} M characters) for {item['users']:,} "
            f"users in {item['seconds']}s"
        )
    if kind == "assistant-steps":
        return "  steps (p50 ms): " + ", ".join(
            f"{name} {figures.get('p50')}" for name, figures in item["steps"].items()
        )
    if kind == "assistant-sequential":
        site, direct = item["site"], item["direct"]
        return (
            f"  sequential flush={item['flush_ms']} ms, {item['answers']} answers: TTFT p50/p95 "
            f"site {site['ttft'].get('p50')}/{site['ttft'].get('p95')} direct "
            f"{direct['ttft'].get('p50')}/{direct['ttft'].get('p95')} ms, added "
            f"{item['added_ttft_ms']['p50']}/{item['added_ttft_ms']['p95']} ms; token latency "
            f"p95 site {site['token_latency'].get('p95')} direct "
            f"{direct['token_latency'].get('p95')} ms (added "
            f"{item['added_token_latency_ms']['p95']}); {item['answer_updates_per_answer']} "
            f"answer UPDATEs/answer; errors {item['error_count']}"
        )
    if kind == "assistant-concurrent":
        latency = item["token_latency"]
        return (
            f"  concurrent {item['users']} answers x {1 + item['tabs_per_answer']} viewers: "
            f"upstream {item['upstream_tokens_per_second']} tok/s, delivered "
            f"{item['delivered_tokens_per_second']} tok/s, latency p50/p99 {latency.get('p50')}/"
            f"{latency.get('p99')} ms, server {item['cpu_percent']['server']}% "
            f"({item['server_cpu_us_per_upstream_token']} us/token), "
            f"{item['answer_updates_per_second']} UPDATEs/s, lost {item['lost']}, "
            f"problems {item['problems'] or 'none'}"
        )
    if kind == "assistant-stalled":
        rss, held = item["rss_kb"], item["held"]
        return (
            f"  stalled tab: RSS {mb(rss.get('start'))}→{mb(rss.get('end'))} MB (max "
            f"{mb(rss.get('max'))}, slope {rss.get('slope_mb_per_minute')} MB/min), kernel "
            f"send queue max {item['kernel_send_queue_max']} B; after the flood: held "
            f"{held['bytes']:,} B, stream ended by server: {held['ended_by_server']}; "
            f"{whole_after_resume(item)}/{item['answers_expected']} answers whole after resume"
        )
    if kind == "assistant-stop":
        latency = item["stop_to_disconnect"]
        return (
            f"  stop: {item['tries']} tries, Stop → upstream disconnect p50/p95 "
            f"{latency.get('p50')}/{latency.get('p95')} ms, problems {item['problems'] or 'none'}"
        )
    return f"  {kind}"


def mb(kb) -> str:
    return NONE if kb is None else f"{kb / 1024:,.1f}"


def of(records: list[dict], kind: str) -> list[dict]:
    return [r for r in records if r.get("kind") == kind]


def verdict(met: bool, quick: bool) -> str:
    if quick:
        return "not judged (--quick)"
    return "met" if met else "**not met**"


def targets(records: list[dict], quick: bool) -> str:
    rows = []
    for item in of(records, "assistant-sequential"):
        added, chunk = item["added_ttft_ms"], item["added_token_latency_ms"]
        flush = f"flush {item['flush_ms']} ms"
        met = (added["p50"] or 1e9) <= TARGET_ADDED_TTFT_P50_MS and (
            added["p95"] or 1e9
        ) <= TARGET_ADDED_TTFT_P95_MS
        rows.append(
            [
                f"added time to first token ≤ 5 ms p50, ≤ 15 ms p95 ({flush})",
                f"{ms(added['p50'])} / {ms(added['p95'])} ms",
                verdict(met, quick),
            ]
        )
        rows.append(
            [
                f"added latency per chunk ≤ 2 ms p95 ({flush})",
                f"{ms(chunk['p95'])} ms",
                verdict((chunk["p95"] or 1e9) <= TARGET_ADDED_CHUNK_P95_MS, quick),
            ]
        )
    for item in of(records, "assistant-concurrent"):
        ok = item["lost"] == 0 and not item["problems"] and item["asks"] > 0
        rows.append(
            [
                f"{item['users']} answers at once, {item['tabs_per_answer']} tabs each: "
                "nothing lost, every text equals the stored text",
                f"{fmt(item['delivered'])} of {fmt(item['expected_deliveries'])} token "
                f"deliveries, lost {fmt(item['lost'])}, "
                f"{'no problems' if not item['problems'] else item['problems']}",
                verdict(ok, quick),
            ]
        )
    for item in of(records, "assistant-stalled"):
        rss, held = item["rss_kb"], item["held"]
        growth = (rss["max"] - rss["start"]) / 1024 if rss else None
        whole = whole_after_resume(item)
        rows.append(
            [
                f"a tab that never reads while {fmt(item['tokens'])} tokens stream: "
                "server RSS flat",
                f"RSS +{fmt(growth, 1)} MB at most, slope "
                f"{fmt(rss.get('slope_mb_per_minute'), 2)} MB/min (the kernel held "
                f"{fmt(item['kernel_send_queue_max'])} B of it)",
                verdict(growth is not None and growth <= FLAT_RSS_MB, quick),
            ]
        )
        rows.append(
            [
                "…its buffer bounded: past the kernel's buffers and SSE_BUFFER_EVENTS the "
                "server ends the stream",
                f"stream ended: {_yes(held['ended_by_server'])}, after "
                f"{fmt(held['bytes'])} B held for the tab",
                verdict(held["ended_by_server"], quick),
            ]
        )
        rows.append(
            [
                "…and the tab resumes exactly (every answer whole, as stored)",
                f"{fmt(whole)} of {fmt(item['answers_expected'])} answers whole after resuming",
                verdict(whole == item["answers_expected"], quick),
            ]
        )
    for item in of(records, "assistant-stop"):
        p95 = item["stop_to_disconnect"].get("p95")
        ok = p95 is not None and p95 < TARGET_STOP_P95_MS and not item["problems"]
        rows.append(
            [
                "Stop on the other process: upstream cut, p95 < 250 ms",
                f"p95 {ms(p95)} ms ({item['tries']} tries"
                + (f"; {item['problems']}" if item["problems"] else "")
                + ")",
                verdict(ok, quick),
            ]
        )
    return table(["target", "measured", "verdict"], rows) if rows else ""


def whole_after_resume(item: dict) -> int:
    """Answers the stalled tab had whole, as stored, once it had resumed."""
    return item["answers_expected"] - item["answers_differing_from_stored"]


def _yes(value) -> str:
    return "yes" if value else "no"


def steps_table(records: list[dict]) -> str:
    rows = []
    for item in of(records, "assistant-steps"):
        for name, figures in item["steps"].items():
            rows.append(
                [
                    item["descriptions"].get(name, name),
                    f"{ms(figures.get('p50'), 2)} / {ms(figures.get('p90'), 2)} / "
                    f"{ms(figures.get('max'), 2)}",
                ]
            )
    return table(["step (each alone, in the harness)", "p50 / p90 / max ms"], rows) if rows else ""


def sequential_table(records: list[dict]) -> str:
    rows = []
    for item in of(records, "assistant-sequential"):
        for mode in ("direct", "site"):
            part = item[mode]
            ttft, tokens, parts = part["ttft"], part["token_latency"], part["ttft_parts"]
            added = mode == "site"
            rows.append(
                [
                    f"{item['flush_ms']} ms",
                    "fake upstream, direct (floor)" if mode == "direct" else "through the site",
                    fmt(len(part["ttft_ms"])),
                    f"{ms(ttft.get('p50'))} / {ms(ttft.get('p95'))}",
                    f"{ms(item['added_ttft_ms']['p50'])} / {ms(item['added_ttft_ms']['p95'])}"
                    if added
                    else NONE,
                    f"{ms(tokens.get('p50'), 2)} / {ms(tokens.get('p95'), 2)} / "
                    f"{ms(tokens.get('p99'), 2)}",
                    f"{ms(item['added_token_latency_ms']['p50'], 2)} / "
                    f"{ms(item['added_token_latency_ms']['p95'], 2)}"
                    if added
                    else NONE,
                    ms(part["deltas_per_answer"], 1),
                    ms(item["answer_updates_per_answer"], 1) if added else NONE,
                    ms(item["server_cpu_ms_per_answer"], 1) if added else NONE,
                    f"{ms(parts['request_to_upstream'].get('p50'), 2)} / "
                    f"{ms(parts['upstream_first_token'].get('p50'), 2)} / "
                    f"{ms(parts['first_token_to_client'].get('p50'), 2)}",
                ]
            )
    if not rows:
        return ""
    header = [
        "flush", "read", "answers", "TTFT p50 / p95 ms", "added p50 / p95 ms",
        "token latency p50 / p95 / p99 ms", "added p50 / p95 ms", "events per answer",
        "answer UPDATEs per answer", "server CPU ms per answer",
        "TTFT parts p50 ms: request → upstream / upstream's first token / first token → client",
    ]  # fmt: skip
    return table(header, rows)


def concurrent_table(records: list[dict]) -> str:
    rows = []
    for item in of(records, "assistant-concurrent"):
        latency, cpu = item["token_latency"], item["cpu_percent"]
        rows.append(
            [
                fmt(item["users"]),
                f"1 + {item['tabs_per_answer']}",
                f"{fmt(item['tokens_per_answer'])} at {fmt(1 / item['token_delay'])}/s",
                f"{fmt(item['steady_seconds'], 1)} s",
                fmt(item["asks"]),
                fmt(item["upstream_tokens_per_second"]),
                fmt(item["delivered_tokens_per_second"]),
                f"{ms(latency.get('p50'))} / {ms(latency.get('p99'))} / {ms(latency.get('max'))}",
                f"{ms(item['ttft'].get('p50'))} / {ms(item['ttft'].get('p99'))}",
                f"{ms(item['stored_lag'].get('p50'))} / {ms(item['stored_lag'].get('p99'))}",
                f"{fmt(item['hub_queue']['p50'])} / {fmt(item['hub_queue']['max'])}",
                fmt(cpu.get("server")),
                ms(item["server_cpu_us_per_upstream_token"], 1),
                fmt(item["answer_updates_per_second"]),
                fmt(item.get("part_inserts_per_second")),
                fmt(item["commits_per_second"]),
                " / ".join(
                    fmt(cpu.get(name))
                    for name in ("postgres", "redis", "upstream", "client", "machine")
                ),
                f"{fmt(item['lost'])} of {fmt(item['expected_deliveries'])}",
                fmt(item["reconnects"]),
            ]
        )
    if not rows:
        return ""
    header = [
        "answers at once", "viewers each (POST + tabs)", "tokens per answer", "steady",
        "asked", "upstream tokens/s", "delivered tokens/s", "latency p50 / p99 / max ms",
        "TTFT p50 / p99 ms", "stored lag p50 / p99 ms", "hub queue in Redis p50 / max",
        "server CPU %", "server µs per upstream token", "answer UPDATEs/s",
        "answer parts inserted/s", "commits/s", "CPU % PG / Redis / fake / load gen / machine",
        "lost", "tab reconnects",
    ]  # fmt: skip
    return table(header, rows)


def stalled_table(records: list[dict]) -> str:
    rows = []
    for item in of(records, "assistant-stalled"):
        rss, held, flood = item["rss_kb"], item["held"], item["flood"]
        frss = flood["rss_kb"]
        rows.append(
            [
                f"{fmt(item['tokens'])} tokens at {fmt(1 / item['token_delay'])}/s",
                f"{item['flush_ms']} ms / {fmt(item['buffer_events'])}",
                f"{fmt(item['answer_seconds'], 1)} s",
                f"{mb(rss.get('start'))} / {mb(rss.get('end'))} / {mb(rss.get('max'))}",
                fmt(rss.get("slope_mb_per_minute"), 2),
                fmt(item["kernel_send_queue_max"]),
                f"{fmt(flood['asks'])} of {fmt(flood['question_chars'])} chars in "
                f"{fmt(flood['seconds'], 1)} s",
                f"{mb(frss.get('max'))} / {fmt(flood['kernel_send_queue_max'])}",
                f"{fmt(held['bytes'])} B, {_yes(held['ended_by_server'])}",
                f"{fmt(whole_after_resume(item))} / {fmt(item['answers_expected'])}",
                f"{fmt(item['asker']['tokens'])}, {_yes(item['asker']['text_equals_stored'])}",
            ]
        )
    if not rows:
        return ""
    header = [
        "answer", "flush / SSE_BUFFER_EVENTS", "streamed in", "server RSS MB start / end / max",
        "RSS slope MB/min", "kernel send queue max B", "then the flood",
        "flood: RSS max MB / kernel queue max B", "held for the tab, stream ended by server",
        "answers whole after resume / expected", "asker's tokens, text = stored",
    ]  # fmt: skip
    return table(header, rows)


def stop_table(records: list[dict]) -> str:
    rows = []
    for item in of(records, "assistant-stop"):
        latency, http = item["stop_to_disconnect"], item["stop_http"]
        done = item["stop_to_done_event"]
        rows.append(
            [
                fmt(item["tries"]),
                f"{ms(latency.get('p50'))} / {ms(latency.get('p95'))} / {ms(latency.get('max'))}",
                f"{ms(http.get('p50'))} / {ms(http.get('p95'))}",
                f"{ms(done.get('p50'))} / {ms(done.get('p95'))}",
                str(item["problems"] or "none"),
            ]
        )
    if not rows:
        return ""
    header = [
        "tries", "Stop sent → upstream disconnect p50 / p95 / max ms",
        "Stop HTTP answer p50 / p95 ms", "Stop sent → asker's done event p50 / p95 ms",
        "problems",
    ]  # fmt: skip
    return table(header, rows)


def render(records: list[dict], results_path: str, elapsed_minutes: float | None = None) -> str:
    machine = next(r for r in records if r.get("kind") == "machine")
    options = next((r for r in records if r.get("kind") == "options"), {})
    quick = bool(options.get("quick"))
    history = next((r for r in records if r.get("kind") == "history"), None)
    end = next((r for r in records if r.get("kind") == "end"), {})
    elapsed_minutes = elapsed_minutes or end.get("elapsed_minutes")
    parts = [
        f"Assistant benchmark, {machine['date']}"
        + (f", {elapsed_minutes:.1f} min" if elapsed_minutes else "")
        + f"{' (--quick)' if quick else ''}. Raw: `{results_path}`.",
        "",
        "Machine: " + summary_line(machine),
        "",
    ]
    if history:
        parts += [
            f"Database: {history['conversations']:,} conversations of "
            f"{history['turns_per_conversation']} answered questions each "
            f"({history['answers']:,} answers, {history['answer_characters'] / 1e6:.1f} M "
            f"characters) for {history['users']:,} users, seeded before the runs.",
            "",
        ]
    for title, body in (
        ("Targets", targets(records, quick)),
        ("(1) One answer at a time: the fake upstream direct, and through the site",
         sequential_table(records)),
        ("(2) Answers at once", concurrent_table(records)),
        ("The path's steps, each timed alone", steps_table(records)),
        ("(3) A tab that never reads", stalled_table(records)),
        ("(4) Stop from the other process", stop_table(records)),
    ):  # fmt: skip
        if body:
            parts += [f"#### {title}", "", body, ""]
    return "\n".join(parts)


def update_docs(path: Path, generated: str) -> None:
    """Replace the generated part of the docs' assistant section (between the markers)."""
    report.update_docs(path, generated, BEGIN, END)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file")
    parser.add_argument("--docs", action="store_true", help="write the tables into the docs")
    args = parser.parse_args(argv)
    with open(args.file) as file:
        records = [json.loads(line) for line in file if line.strip()]
    generated = render(records, args.file)
    print(generated)
    if args.docs:
        update_docs(DOCS, generated)


if __name__ == "__main__":
    main()
