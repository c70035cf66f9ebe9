"""Load generator of the assistant benchmark: a process of its own that asks, follows, stops.

``bench.assistant`` drives it over stdin/stdout, one JSON object per line each way (see
``bench.client_process``); it exits when its stdin closes. Commands (``cmd``):

- ``sequential``, ``stop_tries``: httpx, one answer at a time (``bench.assistant_sequential``);
- ``concurrent_start`` / ``progress`` / ``concurrent_finish``: tabs (raw-socket
  ``GET .../stream``) on every conversation, then askers that re-ask as soon as their
  answer ends (raw-socket ``POST .../messages``), staggered, until ``seconds`` have passed;
- ``stall_open`` / ``long_ask`` / ``progress`` / ``stall_drain``: a tab that reads its
  stream's head and then nothing, while one long answer streams to another reader; then
  the stalled tab reads what the server had kept for it, and resumes from its last id.

Every clock here is ``time.monotonic()``, the fake upstream's clock too; replies carry
``clock_offset`` (``time.time() - time.monotonic()``) to map times onto the harness' samples.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import httpx

from bench.assistant_sequential import (
    queue_script,
    sequential,
    stop_tries,
    summary,
    upstream_records,
)
from bench.assistant_stall_client import StalledTab, ask_once, flood
from bench.assistant_streams import Tab, Tally, open_stream, post_request
from bench.client_process import run_client

#: Tabs opened at once.
CONNECT_CONCURRENCY = 50
#: p99 of token latency reported per this many seconds of sending.
WINDOW_SECONDS = 10


def clock_offset() -> float:
    return time.time() - time.monotonic()


class ConcurrentRun:
    """Answers streaming at once, each watched by its POST and by ``tabs`` tabs."""

    def __init__(self, http: httpx.AsyncClient, command: dict) -> None:
        self.http = http
        self.command = command
        self.port = command["port"]
        self.users = command["users"]
        self.tally = Tally()
        self.tabs: list[Tab] = []
        self.asks: list[dict] = []
        self.asking = 0
        self.ask_errors: dict[str, int] = {}
        self.tasks: list[asyncio.Task] = []

    async def start(self) -> dict:
        command = self.command
        per_user = command["tabs"]
        for index, user in enumerate(self.users):
            for _ in range(per_user):
                viewer = len(self.tabs)
                self.tabs.append(
                    Tab(self.port, user["cookie"], user["conversation"], user["after"],
                        self.tally, viewer)
                )  # fmt: skip
                user.setdefault("tabs", []).append(viewer)
            user["index"] = index
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def connect(tab: Tab) -> bool:
            async with gate:
                try:
                    return await asyncio.wait_for(tab.connect(), 30)
                except (OSError, TimeoutError):
                    return False

        started = time.monotonic()
        ready = await asyncio.gather(*(connect(tab) for tab in self.tabs))
        connect_seconds = time.monotonic() - started
        for tab, ok in zip(self.tabs, ready, strict=True):
            if ok:
                tab.task = asyncio.create_task(tab.follow())
        self.t0 = time.monotonic() + 0.5
        stagger = command["ramp"] / max(len(self.users), 1)
        for user in self.users:
            first_at = self.t0 + user["index"] * stagger
            self.tasks.append(asyncio.create_task(self.asker(user, first_at)))
        return {
            "tabs": len(self.tabs),
            "tabs_ready": sum(ready),
            "connect_seconds": round(connect_seconds, 2),
            "t0": self.t0,
            "clock_offset": clock_offset(),
        }

    async def asker(self, user: dict, first_at: float) -> None:
        """Ask once, at ``first_at``, and read the answer's stream to its end."""
        await asyncio.sleep(max(0.0, first_at - time.monotonic()))
        command = self.command
        path = f"/assistant/{user['conversation']}/messages"
        await queue_script(self.http, command["upstream"], command["script"])
        viewer = -1 - len(self.asks)
        ask = {"viewer": viewer, "user": user["index"], "sent": time.monotonic()}
        self.asks.append(ask)
        self.asking += 1
        payload = {"prompt": f"bench concurrent {viewer}", "client_id": _uuid()}
        try:
            request = post_request(path, self.port, user["cookie"], payload)
            stream = await open_stream(self.port, request, self.tally, viewer)
            stream.conversation = user["conversation"]
            ask["error"] = await stream.done
            ask["answer"] = getattr(stream, "answer", None)
        except OSError as exc:
            ask["error"] = f"connect: {exc}"
        finally:
            self.asking -= 1
        ask["ended"] = time.monotonic()
        if ask["error"]:
            self.ask_errors[ask["error"]] = self.ask_errors.get(ask["error"], 0) + 1

    def progress(self) -> dict:
        return {
            "asks": len(self.asks),
            "asking": self.asking,
            "deltas": self.tally.deltas,
            "token_deliveries": self.tally.tokens,
            "errors": dict(self.tally.errors),
            "ask_errors": self.ask_errors,
            "reconnects": sum(tab.reconnects for tab in self.tabs),
        }

    async def finish(self, drain: float) -> dict:
        """Wait for the askers' last answers, then up to ``drain`` seconds for every tab to
        see the end of every answer asked in its conversation (tabs can lag the POST)."""
        await asyncio.gather(*self.tasks)
        deadline = time.monotonic() + drain
        while time.monotonic() < deadline and not self.tabs_caught_up():
            self.tally.done_seen.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.tally.done_seen.wait(), 1)
        for tab in self.tabs:
            tab.close()
        await asyncio.gather(*(t.task for t in self.tabs if t.task), return_exceptions=True)
        self.window = await self.all_streaming()
        return self.results()

    async def all_streaming(self) -> tuple[float, float]:
        """When every answer was being generated at once, by the fake upstream's records:
        from the last request it received to the first it finished."""
        records = (await upstream_records(self.http, self.command["upstream"])).values()
        ours = [r for r in records if str(r["body"]["messages"][-1]["content"]).startswith(
            "bench concurrent")]  # fmt: skip
        ends = [r["completed_at"] or r["disconnected_at"] or time.monotonic() for r in ours]
        return max(r["started_at"] for r in ours), min(ends)

    def tabs_caught_up(self) -> bool:
        views = self.tally.views
        for ask in self.asks:
            answer = ask.get("answer")
            user = self.users[ask["user"]]
            if answer is None:
                continue
            for viewer in user["tabs"]:
                view = views.get((viewer, answer))
                if view is None or view.status is None:
                    return False
        return True

    def results(self) -> dict:
        tally, (w0, w1) = self.tally, self.window
        buckets: dict[int, list[float]] = {}
        steady: list[float] = []
        received = 0
        for latency, sent in zip(tally.latencies, tally.sent, strict=True):
            buckets.setdefault(int((sent - self.t0) // WINDOW_SECONDS), []).append(latency)
            if w0 <= sent < w1:
                steady.append(latency)
            if w0 <= sent + latency < w1:
                received += 1
        windows = [
            {"start_seconds": index * WINDOW_SECONDS, **summary(values)}
            for index, values in sorted(buckets.items())
        ]
        ttft_of = {a["answer"]: tally.first_delta[a["answer"]] - a["sent"]
                   for a in self.asks if a.get("answer") in tally.first_delta}  # fmt: skip
        return {
            "window": [w0, w1],
            "clock_offset": clock_offset(),
            "asks": len(self.asks),
            "ask_errors": self.ask_errors,
            "tabs": len(self.tabs),
            "reconnects": sum(tab.reconnects for tab in self.tabs),
            "tab_failures": _merge(tab.failures for tab in self.tabs),
            "errors": dict(tally.errors),
            "repeated": tally.repeated,
            "deltas": tally.deltas,
            "token_deliveries": tally.tokens,
            "steady_token_latency": summary(steady),
            "token_latency": summary(list(tally.latencies)),
            "post_token_latency": summary(list(tally.post_latencies)),
            "steady_deliveries": received,
            "steady_upstream_tokens": sum(1 for sent in tally.post_sent if w0 <= sent < w1),
            "ttft": summary(list(ttft_of.values())),
            "latency_windows": windows,
            "views": self.views(),
        }

    def views(self) -> dict[int, dict]:
        """What each viewer has of each answer: [tokens, text crc, status, position], for
        the POST that asked it and for every tab; and the tabs that should have it."""
        tally = self.tally
        tabs_of: dict[int, list[int]] = {}
        for viewer, tab in enumerate(self.tabs):
            tabs_of.setdefault(tab.conversation, []).append(viewer)
        views: dict[int, dict] = {}
        for (viewer, answer), view in tally.views.items():
            entry = views.setdefault(answer, {"post": None, "tabs": {}})
            cells = [view.tokens, view.crc, view.status, view.position]
            if viewer < 0:
                entry["post"] = cells
            else:
                entry["tabs"][viewer] = cells
        for answer, entry in views.items():
            entry["expected_tabs"] = tabs_of.get(tally.answers_of.get(answer), [])
        return views


class Client:
    def __init__(self) -> None:
        self.http = httpx.AsyncClient(
            timeout=httpx.Timeout(60),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=100),
        )
        self.run: ConcurrentRun | None = None
        self.stalled = StalledTab()
        self.background: asyncio.Task | None = None
        self.background_tally = Tally()

    async def handle(self, command: dict) -> dict:
        cmd = command["cmd"]
        if cmd == "sequential":
            return await sequential(self.http, command)
        if cmd == "stop_tries":
            return await stop_tries(self.http, command)
        if cmd == "concurrent_start":
            self.run = ConcurrentRun(self.http, command)
            return await self.run.start()
        if cmd == "concurrent_finish":
            return await self.run.finish(command.get("drain", 30))
        if cmd == "progress":
            return self.run.progress()
        if cmd == "stall_open":
            return await self.stalled.open(command)
        if cmd == "stall_drain":
            return await self.stalled.drain(command)
        if cmd in ("ask", "flood"):  # in the background: ``poll`` until done
            self.background_tally = tally = Tally()
            if cmd == "flood":
                work = flood(self.http, command)
            else:
                work = ask_once(self.http, command, tally, -1, "bench long answer")
            self.background = asyncio.create_task(work)
            return {"started": time.monotonic()}
        if cmd == "poll":
            if self.background.done():
                return {"done": True, "result": self.background.result()}
            return {"done": False, "tokens": self.background_tally.tokens}
        raise ValueError(f"unknown command {cmd!r}")

    async def close(self) -> None:
        await self.http.aclose()


def _uuid() -> str:
    import uuid

    return str(uuid.uuid4())


def _merge(counters) -> dict:
    merged: dict[str, int] = {}
    for counter in counters:
        for key, value in counter.items():
            merged[key] = merged.get(key, 0) + value
    return merged


if __name__ == "__main__":
    run_client(Client)
