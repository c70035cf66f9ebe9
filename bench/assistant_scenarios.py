"""The assistant benchmark's first two scenarios: one answer at a time, then 200 at once.

Each starts its own server (``manage.py serve --workers 1``, the production command) with
the environment it needs, drives the load generator (``bench.assistant_client``), samples
CPU and memory from /proc, counts the database's writes, checks what was delivered against
what was stored, and hands one record to ``bench.record``.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import time
from typing import TYPE_CHECKING

from bench import assistant_data
from bench.assistant_probes import PipelineProbe
from bench.assistant_sequential import summary
from bench.assistant_tokens import check_answer, script
from bench.processes import Profiler, Sampler, Server, spawn

if TYPE_CHECKING:
    from bench.assistant import AssistantBench

#: Pairs (direct, site) per load-generator command: a progress line after each batch.
BATCH = 50
SLACK = 120


def assistant_environment(fake_base_url: str, flush_ms: int, buffer_events=None) -> dict:
    """The server's assistant settings: the fake upstream, limits out of the way."""
    env = {
        "LLM_BASE_URL": fake_base_url,
        "LLM_MODEL": "bench-model",
        "ASSISTANT_MAX_CONCURRENT": "1000",
        "ASSISTANT_DAILY_TOKENS": "1000000000",
        "ASSISTANT_FLUSH_MILLISECONDS": str(flush_ms),
    }
    if buffer_events:
        env["SSE_BUFFER_EVENTS"] = str(buffer_events)
    return env


class PortServer(Server):
    """``manage.py serve --workers 1`` binding 127.0.0.1:<port> itself, as in production.

    Not the other benchmarks' ``--fd``: uvicorn wraps a passed descriptor as an AF_UNIX
    socket (``uvicorn/server.py``, ``socket.fromfd(config.fd, socket.AF_UNIX, ...)``), so
    uvloop serves it as a pipe and never sets TCP_NODELAY; a small SSE event written while
    the previous one awaits its delayed ACK then waits up to 40 ms in the kernel (measured:
    the first event after the head arrived 22.5 ms late, against 0.3 ms on a port).
    """

    def start(self) -> PortServer:
        with socket.socket() as probe:  # a free port; the server binds it a moment later
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        command = [
            sys.executable, "manage.py", "serve", "--host", "127.0.0.1",
            "--port", str(self.port), "--workers", "1", "--no-collectstatic",
        ]  # fmt: skip
        with open(self.log_path, "ab") as log:
            self.process = spawn(command, env=self.env, stdout=log, stderr=log)
        self._wait_until_ready()
        return self


def start_server(bench: AssistantBench, label: str, flush_ms: int, buffer_events=None) -> Server:
    env = bench.env | assistant_environment(bench.fake.base_url, flush_ms, buffer_events)
    return PortServer("uvicorn", env, bench.log_dir, label).start()


@contextlib.contextmanager
def profiling(bench: AssistantBench, pids: dict[str, int], name: str):
    """py-spy record of each server process for the block, with ``--profile``."""
    profilers = []
    if bench.profile_dir is not None:
        for label, pid in pids.items():
            path = bench.profile_dir / f"{name}-{label}.txt"
            profilers.append(Profiler(pid, path, bench.env))
    try:
        yield
    finally:
        for profiler in profilers:
            profiler.stop()


def sampled(bench: AssistantBench, servers: list[Server], fds: bool = False) -> Sampler:
    pids = {
        "server": servers[0].pid,
        "client": bench.client.pid,
        "upstream": bench.fake.process.pid,
    }
    for index, server in enumerate(servers[1:], start=1):
        pids[f"server{index}"] = server.pid
    return Sampler(pids, fds=fds)


def cpu(sampler: Sampler, start: float, end: float, names=None) -> dict:
    names = names or ("server", "client", "upstream", "postgres", "redis", "machine")
    return {name: sampler.cpu_percent(name, start, end) for name in names}


def quantile_gap(site: dict, direct: dict, name: str):
    a, b = site.get(name), direct.get(name)
    return None if a is None or b is None else round(a - b, 3)


# 1. One answer at a time ---------------------------------------------------------------


def sequential(bench: AssistantBench, flush_ms: int) -> None:
    """``--seq-answers`` pairs: the stream straight from the fake, then through the site."""
    args = bench.args
    users = bench.take_users(args.seq_answers + args.seq_warmup)
    bench.fake.reset()
    the_script = script(args.seq_tokens, args.seq_token_delay)
    before = assistant_data.write_counters(bench.database)
    raw: dict[str, dict[str, list]] = {}
    errors: list[str] = []
    template = None
    server = start_server(bench, f"sequential-flush{flush_ms}", flush_ms)
    try:
        with (
            sampled(bench, [server]) as sampler,
            profiling(bench, {"server": server.pid}, f"sequential-flush{flush_ms}"),
        ):
            started = time.time()
            for first in range(0, len(users), BATCH):
                batch = users[first : first + BATCH]
                reply = bench.client.request(
                    {
                        "cmd": "sequential", "upstream": bench.fake.url, "port": server.port,
                        "script": the_script, "label": f"f{flush_ms}-{first}",
                        "users": batch, "warmup": max(0, args.seq_warmup - first),
                        "template": template,
                    },
                    timeout=len(batch) * 5 + SLACK,
                )  # fmt: skip
                template = reply["template"]
                errors += reply["errors"]
                for mode in ("site", "direct"):
                    for key, values in reply[mode].items():
                        raw.setdefault(mode, {}).setdefault(key, []).extend(values)
                done = len(raw.get("site", {}).get("ttft", []))
                print(
                    f"  sequential flush={flush_ms} ms: {done} answers kept, "
                    f"{len(errors)} errors, {time.time() - started:.0f}s",
                    flush=True,
                )
            ended = time.time()
    finally:
        server.stop()
    writes = assistant_data.counters_delta(before, assistant_data.write_counters(bench.database))
    result = {mode: _sequential_summary(values) for mode, values in raw.items()}
    site, direct = result["site"], result["direct"]
    asked = len(users) + 1  # every pair's site answer and the template's
    server_cpu = sampler.cpu_percent("server", started, ended)
    bench.record(
        {
            "kind": "assistant-sequential",
            "flush_ms": flush_ms,
            "answers": len(site["ttft_ms"]),
            "warmup": args.seq_warmup,
            "tokens_per_answer": args.seq_tokens,
            "token_delay": args.seq_token_delay,
            "site": site,
            "direct": direct,
            "added_ttft_ms": {p: quantile_gap(site["ttft"], direct["ttft"], p) for p in PS},
            "added_token_latency_ms": {
                p: quantile_gap(site["token_latency"], direct["token_latency"], p) for p in PS
            },
            "writes": writes,
            "answer_updates_per_answer": round(writes["answer_updates"] / asked, 2),
            "commits_per_answer": round(writes["commits"] / asked, 2),
            "seconds": round(ended - started, 1),
            "cpu_percent": cpu(sampler, started, ended),
            "server_cpu_ms_per_answer": None
            if server_cpu is None
            else round(10 * server_cpu * (ended - started) / asked, 2),
            "errors": errors[:20],
            "error_count": len(errors),
        }
    )


PS = ("p50", "p90", "p95", "p99")


def _sequential_summary(values: dict[str, list]) -> dict:
    deltas = values.get("deltas", [])
    return {
        "ttft_ms": [round(1000 * s, 3) for s in values.get("ttft", [])],
        "ttft": summary(values.get("ttft", [])),
        "token_latency": summary(values.get("token_latency", [])),
        "tokens": len(values.get("token_latency", [])),
        "deltas_per_answer": round(sum(deltas) / len(deltas), 2) if deltas else None,
        "ttft_parts": {
            part: summary(values.get(part, []))
            for part in ("request_to_upstream", "upstream_first_token", "first_token_to_client")
        },
    }


# 2. Many answers at once ---------------------------------------------------------------


def concurrent(bench: AssistantBench) -> None:
    """``--concurrent-n`` users each ask once (within ``--concurrent-ramp`` seconds) for an
    answer long enough to overlap all the others, each conversation followed by ``--tabs``
    tabs. Figures are taken over the window when every answer was being generated."""
    args = bench.args
    users = bench.take_users(args.concurrent_n)
    bench.fake.reset()
    the_script = script(args.concurrent_tokens, args.concurrent_token_delay)
    last_before = assistant_data.last_answer_id()
    before = assistant_data.write_counters(bench.database)
    server = start_server(bench, "concurrent", args.flush_ms[0])
    counters: list[tuple[float, dict]] = []
    try:
        with sampled(bench, [server]) as sampler, PipelineProbe(bench.redis) as pipeline:
            start = bench.client.request(
                {
                    "cmd": "concurrent_start", "port": server.port, "upstream": bench.fake.url,
                    "users": users, "tabs": args.tabs, "ramp": args.concurrent_ramp,
                    "script": the_script,
                },
                timeout=SLACK + len(users),
            )  # fmt: skip
            print(
                f"  concurrent: {start['tabs_ready']}/{start['tabs']} tabs ready in "
                f"{start['connect_seconds']}s; {len(users)} asking",
                flush=True,
            )
            answer_seconds = args.concurrent_tokens * args.concurrent_token_delay
            with profiling(bench, {"server": server.pid}, "concurrent"):
                _progress_until_answered(bench, len(users), answer_seconds * 3 + SLACK, counters)
            result = bench.client.request(
                {"cmd": "concurrent_finish", "drain": args.drain}, timeout=SLACK + args.drain
            )
            rss_kb = _rss(server.pid)
    finally:
        server.stop()
    total = assistant_data.counters_delta(before, assistant_data.write_counters(bench.database))
    offset = result["clock_offset"]
    w0, w1 = (t + offset for t in result["window"])
    seconds = max(w1 - w0, 1e-9)
    steady = _counters_between(counters, w0, w1)
    check = verify_concurrent(result["views"], last_before, args.concurrent_tokens, args.tabs)
    server_cpu = sampler.cpu_percent("server", w0, w1)
    upstream_tokens = result["steady_upstream_tokens"]
    bench.record(
        {
            "kind": "assistant-concurrent",
            "users": len(users),
            "tabs_per_answer": args.tabs,
            "tabs_ready": start["tabs_ready"],
            "flush_ms": args.flush_ms[0],
            "tokens_per_answer": args.concurrent_tokens,
            "token_delay": args.concurrent_token_delay,
            "ramp_seconds": args.concurrent_ramp,
            "steady_seconds": round(w1 - w0, 1),
            "asks": result["asks"],
            "ask_errors": result["ask_errors"],
            "upstream_tokens_per_second": round(upstream_tokens / seconds, 1),
            "delivered_tokens_per_second": round(result["steady_deliveries"] / seconds, 1),
            "token_latency": result["steady_token_latency"],
            "token_latency_all": result["token_latency"],
            "post_token_latency": result["post_token_latency"],
            "latency_windows": result["latency_windows"],
            **pipeline.figures(w0, w1),
            "ttft": result["ttft"],
            "deltas": result["deltas"],
            "cpu_percent": cpu(sampler, w0, w1),
            "server_cpu_us_per_upstream_token": None
            if server_cpu is None or not upstream_tokens
            else round(1e4 * server_cpu * seconds / upstream_tokens, 1),
            "server_rss_kb_end": rss_kb,
            "answer_updates_per_second": steady.get("answer_updates_per_second"),
            "part_inserts_per_second": steady.get("part_inserts_per_second"),
            "commits_per_second": steady.get("commits_per_second"),
            "writes_total": total,
            "reconnects": result["reconnects"],
            "tab_failures": result["tab_failures"],
            "stream_errors": result["errors"],
            "repeated_deltas": result["repeated"],
            **check,
        }
    )


def _progress_until_answered(bench, asks: int, seconds: float, counters: list) -> None:
    """Until every ask's stream has ended: a progress line every 10 s, the database's write
    counters every 2 s (their rate over any window is read afterwards)."""
    deadline = time.time() + seconds
    last_line = time.time()
    while time.time() < deadline:
        time.sleep(2)
        counters.append((time.time(), assistant_data.write_counters(bench.database)))
        p = bench.client.request({"cmd": "progress"}, timeout=SLACK)
        if p["asks"] >= asks and p["asking"] == 0:
            return
        if time.time() - last_line >= 10:
            last_line = time.time()
            print(
                f"  concurrent: {p['asks']} asked, {p['asking']} streaming, "
                f"{p['token_deliveries']:,} token deliveries in {p['deltas']:,} deltas, "
                f"reconnects {p['reconnects']}, errors {p['errors'] or 0} {p['ask_errors'] or ''}",
                flush=True,
            )
    raise RuntimeError("the concurrent answers did not end in time")


def _counters_between(counters: list[tuple[float, dict]], start: float, end: float) -> dict:
    """Writes per second between the samples nearest inside [start, end]."""
    inside = [(t, c) for t, c in counters if start <= t <= end]
    if len(inside) < 2:
        return {}
    (t0, c0), (t1, c1) = inside[0], inside[-1]
    return {f"{key}_per_second": round((c1[key] - c0[key]) / (t1 - t0), 1) for key in c0}


def _rss(pid: int) -> int | None:
    from bench.processes import status_kb

    with contextlib.suppress(OSError):
        return status_kb(pid, "VmRSS")
    return None


def verify_concurrent(views: dict, last_before: int, tokens: int, tabs: int) -> dict:
    """Every answer asked: stored complete and whole (tokens 0..n-1), and every viewer's
    text (the POST's, each tab's) equal to the stored text. Deliveries are counted end to
    end: a viewer short of tokens lost them."""
    created = assistant_data.answers_after(last_before)
    stored = assistant_data.answers(created)
    problems: dict[str, int] = {}
    expected = delivered = lost = 0

    def problem(what: str) -> None:
        problems[what] = problems.get(what, 0) + 1

    for answer in created:
        row = stored[answer]
        if row["status"] != "complete":
            problem(f"stored {row['status']}")
        if check_answer(row["text"], tokens) is not None:
            problem("stored text is not the tokens sent")
        entry = views.get(str(answer))
        if entry is None:
            problem("answer seen by no viewer")
            expected += tokens * (1 + tabs)
            lost += tokens * (1 + tabs)
            continue
        cells = [entry["post"], *(entry["tabs"].get(str(v)) for v in entry["expected_tabs"])]
        expected += tokens * len(cells)
        for cell in cells:
            got = cell[0] if cell else 0
            delivered += got
            lost += max(0, tokens - got)
            if cell is None:
                problem("a viewer never saw the answer")
            elif cell[1] != row["crc"]:
                problem("a viewer's text differs from the stored text")
            elif cell[2] != "complete":
                problem("a viewer did not see the answer end")
    return {
        "answers_checked": len(created),
        "expected_deliveries": expected,
        "delivered": delivered,
        "lost": lost,
        "problems": problems,
    }
