"""``make faults`` (``python -m faults [--small]``): the fault campaign on live servers.

The scenarios are pytest tests (``streamsite/tests/test_faults_campaign.py``): they need
the test database, the live-server fixtures and a redis-server of their own, which pytest
already provides. ``--small`` is the size CI runs; the default is the documented full size,
whose records go to bench/results/<stamp>-faults.jsonl. Needs DATABASE_URL (PostgreSQL)
and REDIS_URL, as ``make bench`` does.
"""

import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest


def main(argv: list[str]) -> int:
    small = "--small" in argv
    os.environ["FAULTS_SIZE"] = "small" if small else "full"
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    results = Path("bench/results") / f"{stamp}-faults{'-small' if small else ''}.jsonl"
    os.environ["FAULTS_RESULTS"] = str(results.resolve())
    path = "streamsite/tests/test_faults_campaign.py"
    status = pytest.main(["-p", "no:cacheprovider", "-s", "-q", path])
    table(results)
    return status


COLUMNS = ("scenario", "passed", "acked_messages", "stored_messages", "notifications",
           "deliveries", "reconnects", "lost", "doubled", "out_of_order",
           "socket_frames_not_in_id_order", "disconnects", "leaked", "rss_growth_kb",
           "rss_second_half_kb", "seconds")  # fmt: skip


def table(results: Path) -> None:
    """The final table: one row per scenario, from the records the run wrote."""
    if not results.exists():
        print("no records written")
        return
    rows = [json.loads(line) for line in results.read_text().splitlines() if line]
    print(f"\n{results}")
    print(" | ".join(COLUMNS))
    for row in rows:
        print(" | ".join(str(row.get(column, "")) for column in COLUMNS))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
