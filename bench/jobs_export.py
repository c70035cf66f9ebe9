"""Benchmark the export job: a worker's memory and rows a second over a large export.

``DATABASE_URL=postgres://.../<scratch db> python -m bench.jobs_export [--rows N]`` migrates
that database, gives one user ``--rows`` notifications (one ``INSERT ... SELECT``), queues
"export my notifications", runs one worker (``manage.py db_worker --batch``) and samples
its resident memory every 100 ms from /proc. Prints one JSON line: rows, seconds, rows a
second, the worker's memory when the job began and at its peak, and the growth. The
database is left as it is (drop it after); nothing but 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        sys.exit("set DATABASE_URL to a scratch PostgreSQL database")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "streamsite.settings")
    media = tempfile.mkdtemp(prefix="bench-jobs-media-")
    os.environ["MEDIA_ROOT"] = media
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    from django.contrib.auth import get_user_model

    from jobs import services, tasks
    from jobs.models import Job
    from notifications.models import Notification

    user, _ = get_user_model().objects.get_or_create(username="bench-export")
    table = connection.ops.quote_name(Notification._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (recipient_id, title, body, url, level, created_at)"  # noqa: S608
            " SELECT %s, 'note ' || n, repeat('x', 80), '', 'info', now()"
            " FROM generate_series(1, %s) AS n",
            [user.pk, args.rows],
        )
    job = services.job_start(
        owner=user, kind=Job.Kind.NOTIFICATIONS_EXPORT, task=tasks.notifications_export
    )
    command = [sys.executable, "manage.py", "db_worker", "--batch", "--no-reload"]
    command += ["--no-startup-delay", "--verbosity", "0"]
    worker = subprocess.Popen(command, cwd=BASE_DIR, env=os.environ.copy())
    began = peak = 0
    samples = []
    while worker.poll() is None:
        job.refresh_from_db()
        rss = rss_kib(worker.pid)
        if job.state == Job.State.RUNNING and not began:
            began = rss
        if began:
            peak = max(peak, rss)
            samples.append((time.monotonic(), job.done, rss))
        time.sleep(0.1)
    job.refresh_from_db()
    seconds = (job.finished_at - job.started_at).total_seconds()
    print(
        json.dumps(
            {
                "rows": job.done,
                "state": job.state,
                "seconds": round(seconds, 1),
                "rows_per_second": round(job.done / seconds),
                "worker_rss_mib_at_start": round(began / 1024, 1),
                "worker_rss_mib_peak": round(peak / 1024, 1),
                "growth_mib": round((peak - began) / 1024, 1),
                "progress_samples": len(samples),
                "file_mib": round(job.result.size / 2**20, 1) if job.result else None,
            }
        )
    )


if __name__ == "__main__":
    main()
