"""(d) The NDJSON export through each server: rows/s, MB/s, and how much memory it grows.

Split from ``bench.scenarios`` (the stream scenarios): it shares only ``Bench`` and
``settle`` with them.
"""

from __future__ import annotations

import time

from bench import data
from bench.processes import Sampler, Server, reset_peak_rss, status_kb
from bench.scenarios import SLACK, Bench, Config, settle


def export(bench: Bench, configs: list[Config], user_id: int, cookie: str) -> None:
    """(d) Download ``--export-rows`` notifications through each server; rows/s, memory."""
    args = bench.args
    data.delete_notifications()
    warm_user, warm_cookie = bench.user_ids[0], bench.cookies[0]
    data.insert_notifications(warm_user, 1000)
    started = time.monotonic()
    data.insert_notifications(user_id, args.export_rows)
    bench.record(
        {"kind": "export-insert", "rows": args.export_rows, "seconds": time.monotonic() - started}
    )
    for config in configs:
        with bench.server(config, "export") as server:
            download(bench, server, config, warm_cookie, timeout=60)
            settle(server.pid)
            rss_before = status_kb(server.pid, "VmRSS")
            reset_peak_rss(server.pid)
            pids = {"server": server.pid, "client": bench.client.pid}
            with Sampler(pids, interval=0.02, others=False) as sampler:
                started_at = time.time()
                reply = download(bench, server, config, cookie, timeout=args.export_timeout)
                ended_at = time.time()
            peak = max(status_kb(server.pid, "VmHWM"), sampler.peak_rss_kb())
            seconds = reply["seconds"]
            bench.record(
                {
                    "kind": "export",
                    "config": config.name,
                    "rows": args.export_rows,
                    **reply,
                    "rows_per_second": round(reply["lines"] / seconds) if seconds else None,
                    "mb_per_second": round(reply["bytes"] / seconds / 2**20, 1)
                    if seconds
                    else None,
                    "rss_before_kb": rss_before,
                    "rss_peak_kb": peak,
                    "rss_growth_mb": round((peak - rss_before) / 1024, 1),
                    "cpu_percent": {
                        name: sampler.cpu_percent(name, started_at, ended_at)
                        for name in ("server", "client", "machine")
                    },
                }
            )
    data.delete_notifications()


def download(bench: Bench, server: Server, config: Config, cookie: str, *, timeout: float) -> dict:
    return bench.client.request(
        {
            "cmd": "download",
            "port": server.port,
            "path": config.export_path,
            "cookie": cookie,
            "within": timeout,
        },
        timeout + SLACK,
    )
