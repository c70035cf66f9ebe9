"""What each metric update on the delivery path costs, alone (issue #11's 5 % bound).

``python -m bench.metrics_cost`` times, in a process of its own, every metric operation the
delivery path makes, as ``manage.py serve`` makes them (prometheus_client's multi-process
mode: each value a memory-mapped file) and as ``runserver`` does (the normal registry),
then multiplies by how often a delivery makes it: once per delivery (the ``Tally``), once
per event per process (the hub's latency histogram), once per message (the publish
counter, the ``db_call`` gauges and histogram). The end-to-end comparison is the
benchmarks' ``streamsite-nometrics`` twin (docs/benchmarks.md, "What the metrics cost");
on a shared 2-core machine its run-to-run spread (about 10 %) hides a 1 % cost, which this
measures directly.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time

#: How many times each operation runs (the median of ``ROUNDS`` rounds is reported).
LOOPS = 200_000
ROUNDS = 5


def measure() -> dict[str, float]:
    """µs per operation, in this process (the mode is chosen by the environment)."""
    from streamsite.observability import metrics

    published = metrics.events_published.labels("chat", "message")
    latency = metrics.delivery_latency.labels("chat")
    delivered = metrics.events_delivered

    def labels_then_inc() -> None:
        delivered.labels("chat", "message").inc()

    operations = {
        "Tally.add (per delivery)": lambda: metrics.delivered.add("chat", "message"),
        "labels().inc() (per delivery, before the Tally)": labels_then_inc,
        "Histogram.observe (per event per process)": lambda: latency.observe(0.004),
        "Counter.inc (per message)": published.inc,
        "Gauge.inc + dec (per db_call)": lambda: (
            metrics.db_call_queue_depth.inc(),
            metrics.db_call_queue_depth.dec(),
        ),
        "Histogram.observe (per db_call)": lambda: metrics.db_call_seconds.observe(0.002),
    }

    async def run() -> dict[str, float]:
        figures = {}
        for name, operation in operations.items():
            rounds = []
            for _ in range(ROUNDS):
                started = time.perf_counter()
                for _ in range(LOOPS):
                    operation()
                rounds.append((time.perf_counter() - started) / LOOPS * 1e6)
            figures[name] = sorted(rounds)[ROUNDS // 2]
        metrics.flush_tallies()
        return figures

    return asyncio.run(run())


def child(mode: str) -> dict[str, float]:
    """``measure`` in a fresh interpreter, with the multi-process directory or without."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "streamsite.settings"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    with tempfile.TemporaryDirectory(prefix="streamsite-metrics-cost-") as directory:
        if mode == "serve":
            env["PROMETHEUS_MULTIPROC_DIR"] = directory
        code = "import django, json; django.setup(); from bench.metrics_cost import measure; "
        code += "print(json.dumps(measure()))"
        output = subprocess.run(
            [sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True
        ).stdout
    return json.loads(output.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.parse_args(argv)
    results = {mode: child(mode) for mode in ("serve", "runserver")}
    print("| operation | µs, serve (multi-process files) | µs, runserver (registry) |")
    print("|---|---:|---:|")
    for name in results["serve"]:
        serve, plain = results["serve"][name], results["runserver"][name]
        print(f"| {name} | {serve:.2f} | {plain:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
