"""The load generator's httpx measurements: one answer at a time, and Stop from afar.

- ``sequential``: the same scripted stream read straight from the fake upstream (the floor)
  and through the site (``POST /assistant/<c>/messages``), in pairs, one user per pair,
  alternating which goes first: time to first token, per-token latency (receive time minus
  the token's send stamp), and where the site's first token spent its time (the fake
  records when each request reached it).
- ``stop_tries``: ask on one server, Stop on the other once a few tokens have shown; time
  from the Stop request to the fake upstream seeing the generating server disconnect.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import httpx

from bench.assistant_streams import CSRF_TOKEN, EventSplitter
from bench.assistant_tokens import TOKEN
from bench.client_process import PERCENTILES, percentile


def site_headers(cookie: str) -> dict[str, str]:
    return {
        "Cookie": f"sessionid={cookie}; csrftoken={CSRF_TOKEN}",
        "X-CSRFToken": CSRF_TOKEN,
        "Accept": "text/event-stream",
    }


def summary(seconds: list[float]) -> dict:
    """Percentiles (ms) of seconds, and how many."""
    ordered = sorted(seconds)
    if not ordered:
        return {"n": 0}
    return {"n": len(ordered), **{name: percentile(ordered, p) for name, p in PERCENTILES}} | {
        "p95": percentile(ordered, 95)
    }


async def queue_script(http: httpx.AsyncClient, upstream: str, script: dict) -> None:
    response = await http.post(f"{upstream}/_scripts", json=[script])
    response.raise_for_status()


async def upstream_records(http: httpx.AsyncClient, upstream: str) -> dict[str, dict]:
    """The fake upstream's records by the question each asked (the last user message)."""
    response = await http.get(f"{upstream}/_requests")
    response.raise_for_status()
    found = {}
    for record in response.json():
        messages = (record.get("body") or {}).get("messages") or [{}]
        found[str(messages[-1].get("content"))] = record
    return found


class Reading:
    """One streamed answer as the client saw it."""

    def __init__(self, marker: str) -> None:
        self.marker = marker
        self.sent_at = time.monotonic()
        self.first: float | None = None  # first token received
        self.first_stamp: float | None = None  # its send stamp
        self.latencies: list[float] = []
        self.deltas = 0
        self.answer: int | None = None
        self.position = 0
        self.status: str | None = None
        self.done_at: float | None = None
        self.error: str | None = None

    def tokens(self, text: str, now: float) -> int:
        found = TOKEN.findall(text)
        for _number, sent in found:
            sent = float(sent)
            if self.first is None:
                self.first, self.first_stamp = now, sent
            self.latencies.append(now - sent)
        return len(found)

    def site_event(self, name: str, payload: bytes, now: float) -> None:
        if name == "turn":
            self.answer = json.loads(payload)["answer"]["id"]
        elif name == "delta":
            delta = json.loads(payload)
            self.deltas += 1
            self.position = delta["position"]
            self.tokens(delta["text"], now)
        elif name == "done":
            done = json.loads(payload)
            self.status, self.position, self.done_at = done["status"], done["position"], now

    def direct_event(self, payload: bytes, now: float) -> None:
        if payload.startswith(b"{"):
            self.deltas += self.tokens(payload.decode(), now) > 0


class EventReader:
    """A response's complete events, handed to ``handle(name, data, now)`` as they arrive."""

    def __init__(self, response: httpx.Response) -> None:
        self.chunks = response.aiter_raw()
        self.splitter = EventSplitter()

    async def read(self, handle, until=None) -> None:
        """Read to the end of the response, or return once ``until()`` is true."""
        async for chunk in self.chunks:
            now = time.monotonic()
            for name, _id, payload in self.splitter.feed(chunk):
                handle(name, payload, now)
            if until is not None and until():
                return


async def ask_site(http, port: int, user: dict, marker: str, *, until=None, then=None) -> Reading:
    """Ask through the site and read the answer's stream (to its end, or until
    ``until(reading)``, then await ``then(reading)`` and read on)."""
    body = {"prompt": marker, "client_id": str(uuid.uuid4())}
    url = f"http://127.0.0.1:{port}/assistant/{user['conversation']}/messages"
    reading = Reading(marker)
    headers = site_headers(user["cookie"])
    async with http.stream("POST", url, json=body, headers=headers) as response:
        if response.status_code != 200:
            reading.error = f"HTTP {response.status_code}: {(await response.aread())[:200]!r}"
            return reading
        reader = EventReader(response)
        await reader.read(reading.site_event, None if until is None else lambda: until(reading))
        if then is not None:
            await then(reading)
            await reader.read(reading.site_event)
    return reading


async def ask_direct(http, upstream: str, body: dict, marker: str) -> Reading:
    body = {**body, "messages": [*body["messages"][:-1], {"role": "user", "content": marker}]}
    reading = Reading(marker)
    async with http.stream("POST", f"{upstream}/v1/chat/completions", json=body) as response:
        if response.status_code != 200:
            reading.error = f"HTTP {response.status_code}"
            return reading
        await EventReader(response).read(lambda _name, data, now: reading.direct_event(data, now))
    return reading


async def sequential(http: httpx.AsyncClient, command: dict) -> dict:
    """Pairs of one direct and one site answer; the first ``warmup`` pairs are not kept.

    Returns raw seconds per mode (the harness merges batches): time to first token, every
    token's latency, deltas per answer, and the site's first token split in three by the
    fake's record of when the request reached it.
    """
    upstream, port, script = command["upstream"], command["port"], command["script"]
    label, warmup, users = command["label"], command["warmup"], command["users"]
    template = command.get("template")
    if template is None:  # what the site sends upstream: the direct requests send it too
        await queue_script(http, upstream, script)
        first = await ask_site(http, port, users[0], f"bench {label} template")
        template = (await upstream_records(http, upstream))[first.marker]["body"]
    kept: dict[str, list[Reading]] = {"site": [], "direct": []}
    errors = []
    for i, user in enumerate(users):
        order = ("direct", "site") if i % 2 == 0 else ("site", "direct")
        for mode in order:
            await queue_script(http, upstream, script)
            marker = f"bench {label} {i} {mode}"
            if mode == "site":
                reading = await ask_site(http, port, user, marker)
            else:
                reading = await ask_direct(http, upstream, template, marker)
            if reading.error or reading.first is None:
                errors.append(f"{mode} {i}: {reading.error or 'no token'}")
            elif i >= warmup:
                kept[mode].append(reading)
    records = await upstream_records(http, upstream)
    result = {"template": template, "errors": errors}
    for mode, readings in kept.items():
        values: dict[str, list] = {
            "ttft": [r.first - r.sent_at for r in readings],
            "token_latency": [x for r in readings for x in r.latencies],
            "deltas": [r.deltas for r in readings],
            "request_to_upstream": [],
            "upstream_first_token": [],
            "first_token_to_client": [],
        }
        for reading in readings:
            record = records.get(reading.marker)
            if record is not None:
                values["request_to_upstream"].append(record["started_at"] - reading.sent_at)
                values["upstream_first_token"].append(reading.first_stamp - record["started_at"])
                values["first_token_to_client"].append(reading.first - reading.first_stamp)
        result[mode] = values
    return result


async def stop_tries(http: httpx.AsyncClient, command: dict) -> dict:
    """Ask on ``ports[i % 2]``, Stop on the other once ``show_tokens`` tokens arrived."""
    upstream, ports, script = command["upstream"], command["ports"], command["script"]
    show, tries = command["show_tokens"], []
    for i, user in enumerate(command["users"]):
        ask_port, stop_port = ports[i % 2], ports[1 - i % 2]
        await queue_script(http, upstream, script)
        stop: dict = {}

        async def send_stop(reading: Reading, stop_port=stop_port, user=user, stop=stop) -> None:
            url = (
                f"http://127.0.0.1:{stop_port}/assistant/{user['conversation']}"
                f"/answers/{reading.answer}/stop"
            )
            stop["position"] = reading.position
            stop["sent_at"] = time.monotonic()
            response = await http.post(
                url, json={"position": reading.position}, headers=site_headers(user["cookie"])
            )
            stop["answered_at"] = time.monotonic()
            stop["status_code"] = response.status_code
            stop["reply"] = response.json() if response.status_code == 200 else response.text[:200]

        reading = await ask_site(
            http, ask_port, user, f"bench stop {i}",
            until=lambda r: len(r.latencies) >= show, then=send_stop,
        )  # fmt: skip
        tries.append((reading, stop, await disconnect_record(http, upstream, reading.marker)))
    out = []
    for reading, stop, record in tries:
        gone = record.get("disconnected_at")
        out.append(
            {
                "answer": reading.answer,
                "error": reading.error,
                "position_shown": stop.get("position"),
                "stop_status_code": stop.get("status_code"),
                "stop_reply": stop.get("reply"),
                "stream_status": reading.status,
                "stream_position": reading.position,
                "stop_http_ms": _ms(stop.get("answered_at"), stop.get("sent_at")),
                "stop_to_done_event_ms": _ms(reading.done_at, stop.get("sent_at")),
                "upstream_disconnected": bool(record.get("disconnected")),
                "upstream_completed": bool(record.get("completed")),
                "stop_to_disconnect_ms": _ms(gone, stop.get("sent_at")),
            }
        )
    return {"tries": out}


async def disconnect_record(http, upstream: str, marker: str, seconds: float = 5) -> dict:
    """The fake's record of the request that asked ``marker``, once it shows the client
    left (the asker can see its ``done`` event before the generating server has closed
    the upstream response), or as it stands after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        record = (await upstream_records(http, upstream)).get(marker) or {}
        if record.get("disconnected") or time.monotonic() > deadline:
            return record
        await asyncio.sleep(0.05)


def _ms(end, start):
    return None if end is None or start is None else round(1000 * (end - start), 3)
