"""The chat benchmark's scenarios: idle sockets, a room at a rate, one big room.

Each drives one server at a time through ``bench.chat.ChatBench`` (the run's shared state:
options, users, the load-generator processes) and hands every measurement to
``bench.record`` as soon as it is made. ``compression`` (a scenario's argument) makes the
load generators offer permessage-deflate as Chromium does.
"""

from __future__ import annotations

import os
import secrets
import time
from array import array
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bench import data
from bench.client_process import PERCENTILES, latency_windows, percentile
from bench.processes import Profiler, Sampler, cpu_seconds

if TYPE_CHECKING:
    from bench.chat import ChatBench

SLACK = 30


def ready_on(app: str) -> str:
    """When a socket counts as ready: streamsite's history frame comes after its subscribe;
    the tutorial joins its group before ``accept()``, and the floor joins its room on the
    upgrade, so the upgrade is enough for them."""
    return "history" if app.startswith("streamsite") else "upgrade"


def settle(pids: list[int], *, quiet_percent: float = 25, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = sum(cpu_seconds(pid) for pid in pids)
        time.sleep(0.5)
        if (sum(cpu_seconds(pid) for pid in pids) - before) * 200 < quiet_percent:
            return


def create_room(slug: str, history: int = 0, authors: list[int] | None = None) -> None:
    """A public room, holding ``history`` messages by ``authors`` before anyone joins."""
    from chat.models import Room

    room = Room.objects.create(slug=slug, name=slug)
    if history and authors:
        data.insert_room_history(room.pk, authors, history)


# Scenarios -------------------------------------------------------------------------------


def warm_up(bench: ChatBench, server, app: str, slug: str) -> None:
    """Open and close 20 sockets (imports, pools, the hub): not per-socket memory."""
    bench.clients.connect(
        server.port, [f"/ws/chat/{slug}/"] * 20, bench.cookies[-20:], bench.args, ready_on(app)
    )
    bench.clients.close()
    settle([server.pid])
    time.sleep(1)


def idle_cpu_percent(pid: int, seconds: float) -> float:
    """The server's CPU over ``seconds`` with nothing but the sockets open, % of a core."""
    before = cpu_seconds(pid)
    time.sleep(seconds)
    return round(100 * (cpu_seconds(pid) - before) / seconds, 1)


def idle(bench: ChatBench, app: str, compression: bool = False) -> None:
    """Hold ``--idle-n`` sockets in one process: memory, threads, connect rate."""
    args = bench.args
    rooms = [f"idle-{i}" for i in range(args.idle_rooms)]
    label = "idle-deflate" if compression else "idle"
    with bench.server(app, 1, label, deflate=compression) as server:
        warm_up(bench, server, app, rooms[0])
        rss_before, threads_before = server.rss_kb(), server.threads()
        n = args.idle_n
        paths = [f"/ws/chat/{rooms[i % len(rooms)]}/" for i in range(n)]
        reply = bench.clients.connect(
            server.port, paths, bench.cookies[:n], args, ready_on(app), compression
        )
        time.sleep(2)
        settle([server.pid])
        idle_cpu = idle_cpu_percent(server.pid, args.idle_cpu_seconds)
        rss_after = server.rss_kb()
        stats = bench.clients.all({"cmd": "stats"}, SLACK)
        ready = reply["ready"]
        bench.record(
            {
                "kind": "chat-idle",
                "config": app,
                "workers": 1,
                "compression": compression,
                "compressed_sockets": reply["compressed"],
                "n": n,
                "rooms": len(rooms),
                "ready": ready,
                "failed": reply["failed"],
                "errors": reply["errors"],
                "open_after_hold": sum(s["open"] for s in stats),
                "close_codes": _merge_counts(s["close_codes"] for s in stats),
                "connect_seconds": reply["seconds"],
                "connects_per_second": round(ready / reply["seconds"], 1)
                if reply["seconds"]
                else None,
                "rss_before_kb": rss_before,
                "rss_after_kb": rss_after,
                "kb_per_socket": round((rss_after - rss_before) / ready, 2) if ready else None,
                "threads_before": threads_before,
                "threads_after": server.threads(),
                "idle_cpu_percent": idle_cpu,
                "pg_connections": data.server_connections(bench.database),
            }
        )
        bench.clients.close()


@dataclass
class Sends:
    """What the load generators saw of one run of sends, and the CPU it took."""

    summaries: list[dict]
    sampler: Sampler
    sent_times: list[float]
    latencies: list[float]  # seconds, sorted
    windows: list[dict]  # latency per window of sending, with the server's RSS and open files
    delivered: int
    first: float | None  # the first send
    last_receive: float
    end: float  # the last delivery or send, whichever is later

    def cpu(self, name: str) -> float | None:
        if self.first and self.end > self.first:
            return self.sampler.cpu_percent(name, self.first, self.end)
        return None

    def latency_ms(self) -> dict:
        if not self.latencies:
            return {}
        return {name: percentile(self.latencies, p) for name, p in PERCENTILES}


def send_and_count(
    bench: ChatBench,
    pids: list[int],
    *,
    run: str,
    count: int,
    rate,
    ready: int,
    profile: str,
    window: float = 0,
) -> Sends:
    """``--senders`` (or fewer) of the sockets send ``count`` messages at ``rate``/s; wait
    until every ready socket has every message or the ``--drain`` is over; collect. With
    ``window``, latency is also reported per ``window`` seconds of sending, with the first
    worker's RSS and open files at the end of each."""
    args = bench.args
    k = len(bench.clients.children)
    senders = min(args.senders, ready, count)
    # Global sender g is socket g // k of client g % k (sockets are dealt round-robin).
    start = [
        {
            "cmd": "start",
            "run": run,
            "count": count,
            "rate": rate,
            "t0": 0,
            "senders": {str(g): g // k for g in range(senders) if g % k == i},
            "of": senders,
            "window": window,
        }
        for i in range(k)
    ]
    profilers = []
    if bench.profile_dir is not None:
        for index, pid in enumerate(pids):
            name = f"{profile}-worker{index}.txt"
            profilers.append(Profiler(pid, bench.profile_dir / name, bench.env))
    sampled = {f"server{i}": pid for i, pid in enumerate(pids)}
    sampled |= {f"client{i}": pid for i, pid in enumerate(bench.clients.pids)}
    sampled["server"] = pids[0]  # whose RSS (and open files) are sampled
    try:
        with Sampler(sampled, fds=bool(window)) as sampler:
            t0 = time.time() + 0.5
            for command in start:
                command["t0"] = t0
            bench.clients.all(start, SLACK)
            last_due = t0 + (count - 1) / rate
            # Sending, then the drain: stop early once everything has arrived.
            while True:
                time.sleep(0.25)
                progress = bench.clients.all({"cmd": "progress"}, SLACK)
                sent = sum(p["sent"] for p in progress)
                unique = sum(p["unique"] for p in progress)
                sending = any(p["sending"] for p in progress)
                if not sending and unique >= ready * sent:
                    break
                if time.time() > last_due + args.drain and (
                    not sending or time.time() > last_due + 2 * args.drain
                ):
                    break
            summaries = bench.clients.all({"cmd": "stop"}, 120)
    finally:
        for profiler in profilers:
            profiler.stop()
    sent_times = sorted(t for s in summaries for t in s["sent"].values())
    latencies, delivery_sent = array("d"), array("d")
    for summary in summaries:
        path = summary["latencies_file"]
        with open(path, "rb") as file:
            latencies.frombytes(file.read())
        os.unlink(path)
        if window:
            with open(path + ".sent", "rb") as file:
                delivery_sent.frombytes(file.read())
            os.unlink(path + ".sent")
    windows = latency_windows(delivery_sent, latencies, window)
    first = sent_times[0] if sent_times else None
    for item in windows:  # the server's memory and open files at the end of each window
        item["rss_kb"], item["fds"] = sampler.resources_at(first + item["start_seconds"] + window)
    last_receive = max((s["last_receive"] or 0 for s in summaries), default=0)
    return Sends(
        summaries=summaries,
        sampler=sampler,
        sent_times=sent_times,
        latencies=sorted(latencies),
        windows=windows,
        delivered=sum(s["unique"] for s in summaries),
        first=sent_times[0] if sent_times else None,
        last_receive=last_receive,
        end=max(last_receive, sent_times[-1] if sent_times else 0),
    )


def room(
    bench: ChatBench,
    app: str,
    workers: int,
    rate,
    repeat: int,
    compression: bool = False,
    *,
    soak: bool = False,
) -> dict:
    """One room of ``--room-n`` sockets; ``--senders`` send ``rate``/s for ``--seconds``
    (a ``soak``: for ``--soak-seconds``, reported per ``--window-seconds`` as well)."""
    args = bench.args
    run = secrets.token_hex(4)
    slug = f"room-{run}"
    create_room(slug, args.history_messages, bench.users[: args.senders])
    n = args.room_n
    seconds = args.soak_seconds if soak else args.seconds
    count = max(1, round(rate * seconds))
    label = f"{'soak' if soak else 'room'}-r{rate}-{repeat}{'-deflate' if compression else ''}"
    with bench.server(app, workers, label, deflate=compression) as server:
        pids = server.pids
        rss_start = server.rss_kb()
        frames_before = sum(s["frames"] for s in bench.clients.all({"cmd": "stats"}, SLACK))
        reply = bench.clients.connect(
            server.port, [f"/ws/chat/{slug}/"] * n, bench.cookies[:n], args, ready_on(app),
            compression,
        )  # fmt: skip
        time.sleep(1)
        settle(pids)
        rss_connected = server.rss_kb()
        per_worker = server.sockets_per_worker()
        # Frames the sockets got while the room filled (presence, history): before any send.
        connect_frames = (
            sum(s["frames"] for s in bench.clients.all({"cmd": "stats"}, SLACK)) - frames_before
        )
        ready = reply["ready"]
        k = len(bench.clients.children)
        profile = f"{app}-w{workers}-r{rate}-{repeat}{'-deflate' if compression else ''}"
        sends = send_and_count(
            bench, pids, run=run, count=count, rate=rate, ready=ready, profile=profile,
            window=args.window_seconds if soak else 0,
        )  # fmt: skip
        rss_peak = server.rss_kb()
        summaries, latencies, delivered = sends.summaries, sends.latencies, sends.delivered
        sent_times, first, cpu = sends.sent_times, sends.first, sends.cpu
        sent = len(sent_times)
        expected = ready * sent
        last_receive = sends.last_receive
        server_cpu = [cpu(f"server{i}") for i in range(len(pids))]
        server_cpu_total = sum(c for c in server_cpu if c is not None)
        busy_seconds = sends.end - first if first else 0
        result = {
            "kind": "chat-soak" if soak else "chat-room",
            "config": app,
            "workers": workers,
            "compression": compression,
            "compressed_sockets": reply["compressed"],
            "history_messages": args.history_messages,
            "n": n,
            "ready": ready,
            "connect_failed": reply["failed"],
            "connect_errors": reply["errors"],
            "connect_seconds": reply["seconds"],
            "connects_per_second": round(ready / reply["seconds"], 1) if reply["seconds"] else None,
            "sockets_per_worker": per_worker,
            "connect_frames": connect_frames,
            "rate": rate,
            "seconds": seconds,
            "count": count,
            "senders": min(args.senders, ready, count),
            "repeat": repeat,
            "run": run,
            "sent": sent,
            "send_rate": round((sent - 1) / (sent_times[-1] - first), 2)
            if sent > 1 and sent_times[-1] > first
            else None,
            "acks": sum(s["acks"] for s in summaries),
            # sent -> ack (streamsite: the message is committed), per client process.
            "ack_latency_ms": [s.get("ack_latency_ms") for s in summaries],
            "errors": _merge_counts(s["errors"] for s in summaries),
            "error_samples": [e for s in summaries for e in s["error_samples"]][:5],
            "expected": expected,
            "delivered": delivered,
            "lost": expected - delivered,
            "loss_percent": round(100 * (1 - delivered / expected), 3) if expected else None,
            "duplicates": sum(s["duplicates"] for s in summaries),
            "closed_during_run": sum(s["closed_during_run"] for s in summaries),
            "deliveries_per_second": round(delivered / (last_receive - first), 1)
            if last_receive and first and last_receive > first
            else None,
            "target_deliveries_per_second": round(ready * rate),
            "latency_ms": sends.latency_ms(),
            "latency_windows": sends.windows,
            "latency_mean_ms": round(1000 * sum(latencies) / len(latencies), 3)
            if latencies
            else None,
            "send_lag_ms_max": max(
                (s["send_lag_ms"].get("max", 0) for s in summaries), default=None
            ),
            "busy_seconds": round(busy_seconds, 3),
            "cpu_percent": {
                "server": round(server_cpu_total, 1),
                "server_workers": server_cpu,
                "client": round(sum(cpu(f"client{i}") or 0 for i in range(k)), 1),
                "redis": cpu("redis"),
                "postgres": cpu("postgres"),
                "machine": cpu("machine"),
            },
            "server_cpu_us_per_delivery": round(
                server_cpu_total / 100 * busy_seconds / delivered * 1e6, 1
            )
            if delivered
            else None,
            "rss_start_kb": rss_start,
            "rss_connected_kb": rss_connected,
            "rss_end_kb": rss_peak,
            "kb_per_socket_connected": round((rss_connected - rss_start) / ready, 2)
            if ready
            else None,
            "threads": server.threads(),
            "layer_drops_logged": server.log_count("over capacity"),
            "raw": {
                "per_second": _sum_timelines([s["per_second"] for s in summaries]),
                "histogram_ms": _sum_histograms([s["histogram_ms"] for s in summaries]),
                "sent_times": sent_times,
            },
        }
        bench.record(result)
        bench.clients.close()
    return result


def bigroom(bench: ChatBench, app: str) -> dict:
    """``--bigroom-n`` sockets of as many distinct users join ONE room on one process; then
    ``--idle-cpu-seconds`` of idle CPU, and one message to the room: latency to all."""
    args = bench.args
    run = secrets.token_hex(4)
    slug = f"big-{run}"
    create_room(slug, args.history_messages, bench.users[: args.senders])
    n = args.bigroom_n
    with bench.server(app, 1, "bigroom") as server:
        warm_up(bench, server, app, slug)
        rss_before = server.rss_kb()
        frames_before = sum(s["frames"] for s in bench.clients.all({"cmd": "stats"}, SLACK))
        reply = bench.clients.connect(
            server.port, [f"/ws/chat/{slug}/"] * n, bench.cookies[:n], args, ready_on(app)
        )
        time.sleep(2)
        settle([server.pid], timeout=60)
        stats = bench.clients.all({"cmd": "stats"}, SLACK)
        joined_frames = sum(s["frames"] for s in stats) - frames_before
        idle_cpu = idle_cpu_percent(server.pid, args.bigroom_idle_seconds)
        rss_after = server.rss_kb()
        stats = bench.clients.all({"cmd": "stats"}, SLACK)
        still_open = sum(s["open"] for s in stats)
        ready = reply["ready"]
        sends = send_and_count(
            bench, [server.pid], run=run, count=1, rate=1, ready=ready, profile=f"{app}-bigroom"
        )
        seconds = reply["seconds"]
        result = {
            "kind": "chat-bigroom",
            "config": app,
            "n": n,
            "ready": ready,
            "refused": reply["failed"],
            "errors": reply["errors"],
            "open_after_join": still_open,
            "closed_after_join": ready - still_open,
            "close_codes": _merge_counts(s["close_codes"] for s in stats),
            "join_seconds": seconds,
            "joins_per_second": round(ready / seconds, 1) if seconds else None,
            "frames_while_joining": joined_frames,
            "rss_before_kb": rss_before,
            "rss_after_kb": rss_after,
            "kb_per_socket": round((rss_after - rss_before) / ready, 2) if ready else None,
            "idle_cpu_percent": idle_cpu,
            "idle_cpu_seconds": args.bigroom_idle_seconds,
            "message_delivered": sends.delivered,
            "message_expected": still_open,
            "message_latency_ms": sends.latency_ms(),
            "message_errors": _merge_counts(s["errors"] for s in sends.summaries),
            "threads": server.threads(),
        }
        bench.record(result)
        bench.clients.close()
    return result


def _merge_counts(items) -> dict:
    total: dict = {}
    for item in items:
        for key, value in item.items():
            total[key] = total.get(key, 0) + value
    return total


def _sum_timelines(timelines: list[list[int]]) -> list[int]:
    length = max((len(t) for t in timelines), default=0)
    return [sum(t[i] for t in timelines if i < len(t)) for i in range(length)]


def _sum_histograms(histograms: list[dict]) -> dict:
    counts = [sum(values) for values in zip(*(h["counts"] for h in histograms), strict=True)]
    return {"edges": histograms[0]["edges"], "counts": counts}
