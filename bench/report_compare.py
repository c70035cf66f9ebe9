"""The SSE report's comparisons: streamsite against the floor, a steady run against itself.

``floor_table``: streamsite's server alone (layer-only publishing, no database writes)
against the plain Starlette broadcaster (``bench.floor_sse``) at the same N and rate, and
their broadcasts to the same idle streams. ``steady_table``: a steady run's (and the soak's) latency
in its first window of publishing against its last (``--window-seconds``), with the
server's memory and open files at the end of the first and the last window.
"""

from __future__ import annotations

from bench.report import FLOOR, NONE, PRODUCTION, TIMES, fmt, median, table, worst

#: Goal: the last window's p99 within this fraction of the first's.
STEADY_DRIFT = 0.20


def floor_verdict(ours, floor, asked, ours_us, floor_us) -> str:
    """Judge "at least half the floor's deliveries/s" (``ours``, ``floor``; ``asked``: the
    deliveries/s the run asked for). When the floor kept up with what was asked (≥ 90 %),
    deliveries/s only repeat the rate asked, so the judgement falls back on server CPU per
    delivery (``ours_us``, ``floor_us``): at most twice the floor's."""
    if not ours or not floor:
        return NONE
    ratio = f"{ours / floor:.2f}{TIMES}"
    if asked and floor >= 0.9 * asked:
        if not ours_us or not floor_us:
            return f"{ratio}; the floor kept up: not judged"
        cost = ours_us / floor_us
        verdict = "met" if cost <= 2 else "**missed**"
        return f"{ratio}; the floor kept up, so by CPU/delivery: {cost:.2f}{TIMES} ({verdict})"
    return f"{ratio} ({'met' if ours / floor >= 0.5 else '**missed**'})"


def us_per_delivery(record: dict) -> float | None:
    """Server CPU per delivery over the run's busy window, in microseconds."""
    cpu, seconds = record["cpu_percent"].get("server"), record.get("busy_seconds")
    if cpu is None or not seconds or not record["delivered"]:
        return None
    return cpu / 100 * seconds / record["delivered"] * 1e6


def _runs(records: list[dict], config: str, mode: str, kind: str) -> dict[tuple, list[dict]]:
    found: dict[tuple, list[dict]] = {}
    for record in records:
        if (
            record.get("kind") == kind
            and record.get("config") == config
            and record.get("mode") == mode
            and record.get("publishers", 1) == 1
        ):
            found.setdefault((record["n"], record["rate"]), []).append(record)
    return found


def floor_table(records: list[dict]) -> str:
    """streamsite (server alone: layer-only publishing) ÷ the floor, for every N and rate
    both were measured at."""
    rows = []
    for kind in ("fanout", "broadcast"):
        ours = _runs(records, PRODUCTION, "layer-only", kind)
        floor = _runs(records, FLOOR, "floor", kind)
        for (n, rate), runs in sorted(ours.items()):
            base = floor.get((n, rate))
            if not base:
                continue
            a, b = median(runs, "deliveries_per_second"), median(base, "deliveries_per_second")
            cost_a = _median_of(us_per_delivery(r) for r in runs)
            cost_b = _median_of(us_per_delivery(r) for r in base)
            asked = median(base, "target_deliveries_per_second")
            rows.append(
                [
                    "broadcast to idle streams" if kind == "broadcast" else "fan-out",
                    fmt(n),
                    fmt(rate),
                    fmt(a),
                    fmt(b),
                    # A broadcast's deliveries/s is how fast it fans out: judged as such.
                    floor_verdict(a, b, asked if kind == "fanout" else None, cost_a, cost_b),
                    f"{fmt(median(runs, 'latency_ms.p50'), 1)} / "
                    f"{fmt(median(runs, 'latency_ms.p99'), 1)}",
                    f"{fmt(median(base, 'latency_ms.p50'), 1)} / "
                    f"{fmt(median(base, 'latency_ms.p99'), 1)}",
                    f"{fmt(cost_a, 1)} / {fmt(cost_b, 1)}",
                    f"{fmt(worst(runs, 'loss_percent'), 2)} / "
                    f"{fmt(worst(base, 'loss_percent'), 2)}",
                ]
            )
    if not rows:
        return ""
    header = [
        "measurement", "N", "pub/s", "streamsite deliveries/s", "floor deliveries/s",
        "streamsite ÷ floor", "streamsite p50 / p99 ms", "floor p50 / p99 ms",
        "server µs/delivery streamsite / floor", "loss % streamsite / floor",
    ]  # fmt: skip
    return table(header, rows)


def _median_of(values) -> float | None:
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    middle = len(values) // 2
    return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2


#: The columns ``window_cells`` fills, for a table's header.
WINDOW_HEADER = [
    "first window p99 ms", "last window p99 ms", "last vs first", "p99 ms per window",
    "server RSS MB first → last window", "open files first → last window",
]  # fmt: skip


def window_cells(windows: list[dict]) -> list[str]:
    """A steady run's windows: p99 in the first and the last (and how far apart), every
    window's p99, and the server's memory and open files at the first and last."""
    first, last = (windows[0], windows[-1]) if windows else ({}, {})
    drift = (
        last["p99"] / first["p99"] - 1
        if len(windows) > 1 and first.get("p99") and last.get("p99")
        else None
    )
    return [
        fmt(first.get("p99"), 1),
        fmt(last.get("p99"), 1),
        NONE
        if drift is None
        else f"{100 * drift:+.0f} %"
        + (" (within 20 %)" if abs(drift) <= STEADY_DRIFT else " (**over 20 %**)"),
        " ".join(fmt(w["p99"]) for w in windows) or NONE,
        _first_last(windows, "rss_kb", lambda kb: f"{kb / 1024:,.0f}"),
        _first_last(windows, "fds", fmt),
    ]


def steady_table(records: list[dict]) -> str:
    """Each steady run: overall figures, then p99 in the first and the last window."""
    rows = []
    for record in records:
        if record.get("kind") not in ("fanout", "soak") or not record.get("steady"):
            continue
        rows.append(
            [
                record["config"] + (" (soak)" if record["kind"] == "soak" else ""),
                fmt(record["n"]),
                f"{fmt(record['rate'])} → {fmt(record['publishes_per_second'], 1)}",
                f"{fmt(record['publish_seconds'], 1)} s",
                fmt(record["latency_ms"].get("p50"), 1),
                fmt(record["latency_ms"].get("p99"), 1),
                fmt(record["latency_ms"].get("max"), 1),
                fmt(record["loss_percent"], 2),
                *window_cells(record.get("latency_windows") or []),
            ]
        )
    if not rows:
        return ""
    header = [
        "server", "N", "pub/s target → actual", "published over", "p50 ms", "p99 ms",
        "max ms", "loss %", *WINDOW_HEADER,
    ]  # fmt: skip
    return table(header, rows)


def _first_last(windows: list[dict], name: str, show) -> str:
    values = [w[name] for w in windows if w.get(name) is not None]
    return f"{show(values[0])} → {show(values[-1])}" if values else NONE
