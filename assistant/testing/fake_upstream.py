"""A fake OpenAI-compatible server that tests script, byte for byte, over real HTTP.

Run it in its own process (``python -m assistant.testing.fake_upstream --fd N`` on a
socket the test process bound, or ``--port``); ``FakeUpstreamProcess`` does that. A raw
ASGI app on uvicorn, with no Django and no database, so live servers in other processes
can use it too (``LLM_BASE_URL=<its url>/v1``).

Control endpoints:

- ``POST /_scripts``: queue scripts (a JSON object or a list); each answers the next
  ``POST .../chat/completions``. With none queued, a short normal answer.
- ``GET /_requests``: what it received, oldest first (see ``record``).
- ``POST /_reset``: forget scripts and requests; streams in flight end at once.
- ``GET /_health``: 200 once it serves.

A script (all keys optional):

- ``status`` (200), ``headers`` (a dict, over the defaults), ``body`` (a string, or JSON):
  answer with this whole body instead of a stream (errors: ``{"status": 429, "body": ...}``).
- ``expect_api_key``: answer 401 unless the request has ``Authorization: Bearer <it>``.
- ``chunks``: raw pieces to send, in order, each ``{"data": <latin-1 text>}``,
  ``{"b64": ...}`` or ``{"utf8": ...}`` with an optional ``"delay"`` (seconds, before it),
  or ``{"stall": <seconds, or null for until the client leaves>}``.
- ``tokens``: build an OpenAI stream of these (``openai_stream.openai_events`` options:
  ``model``, ``finish_reason``, ``usage``, ``prompt_tokens``, ``completion_tokens``,
  ``done``, ``crlf``, ``end_early``), plus ``token_delay`` (seconds before each token),
  ``stall_after`` (tokens sent before a stall of ``stall_seconds``, null: until the client
  leaves), ``error_after`` (tokens sent before an error event, then the end; its
  ``error_style`` "event" or "data", its ``error_message``), ``stamp`` (a placeholder,
  such as ``"{t}"``, replaced in each token's event by ``time.monotonic()`` as it is sent,
  ``%.6f``: a benchmark reads each token's send time from the text it receives).

Disconnects are observed while streaming or stalling (``receive()`` is watched for
``http.disconnect`` all along) and recorded with ``time.monotonic()``, which on Linux is one
clock for every process, so a test can compare it with its own.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import time
from collections import deque
from dataclasses import dataclass, field

from .openai_stream import error_event, openai_events

DEFAULT_TOKENS = ["Hello", " from", " the", " fake", " upstream", "."]
STREAM_OPTIONS = (
    "model", "finish_reason", "usage", "prompt_tokens", "completion_tokens", "done", "crlf",
    "end_early",
)  # fmt: skip


class ScriptError(ValueError):
    """A script the fake upstream cannot follow (answered with 400 when it is queued)."""


@dataclass
class Plan:
    """A script compiled: the response head, then steps of ("send", bytes, delay),
    ("stamp", bytes, delay, placeholder) or ("stall", seconds or None)."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    steps: list[tuple] = field(default_factory=list)
    expect_api_key: str | None = None


def compile_script(script: dict) -> Plan:
    """Turn a script (see the module docstring) into a plan; raise ScriptError if unusable."""
    if not isinstance(script, dict):
        raise ScriptError("a script is a JSON object")
    plan = Plan(status=int(script.get("status", 200)), expect_api_key=script.get("expect_api_key"))
    if "body" in script:
        body = script["body"]
        is_text = isinstance(body, str)
        plan.headers["content-type"] = "text/plain" if is_text else "application/json"
        plan.steps.append(("send", (body if is_text else json.dumps(body)).encode(), 0.0))
    else:
        plan.headers["content-type"] = "text/event-stream; charset=utf-8"
        plan.headers["cache-control"] = "no-cache"
        if "chunks" in script:
            plan.steps = [_raw_step(item) for item in script["chunks"]]
        else:
            plan.steps = _token_steps(script)
    plan.headers |= {str(k).lower(): str(v) for k, v in script.get("headers", {}).items()}
    return plan


def _raw_step(item: dict) -> tuple:
    if not isinstance(item, dict):
        raise ScriptError("each chunk is a JSON object")
    if "stall" in item:
        return ("stall", item["stall"])
    if "data" in item:
        data = item["data"].encode("latin-1")
    elif "b64" in item:
        data = base64.b64decode(item["b64"])
    elif "utf8" in item:
        data = item["utf8"].encode()
    else:
        raise ScriptError('a chunk has "data", "b64", "utf8" or "stall"')
    return ("send", data, float(item.get("delay", 0)))


def _token_steps(script: dict) -> list[tuple]:
    tokens = script.get("tokens", DEFAULT_TOKENS)
    options = {name: script[name] for name in STREAM_OPTIONS if name in script}
    try:
        events = openai_events(tokens, **options)
    except (TypeError, ValueError) as error:
        raise ScriptError(str(error)) from None
    delay = float(script.get("token_delay", 0))
    stamp = script.get("stamp")
    if stamp is not None and (not isinstance(stamp, str) or not stamp):
        raise ScriptError("stamp is a non-empty placeholder string")
    stamp = stamp.encode() if stamp else None
    stall_after, error_after = script.get("stall_after"), script.get("error_after")
    steps = []
    # events[0] is the role chunk, events[1..len(tokens)] the tokens, then the end.
    for position, event in enumerate(events):
        if position == (error_after if error_after is not None else -2) + 1:
            message = script.get("error_message", "the fake upstream failed")
            style = script.get("error_style", "event")
            steps.append(("send", error_event(message, style=style), 0.0))
            return steps
        if position == (stall_after if stall_after is not None else -2) + 1:
            steps.append(("stall", script.get("stall_seconds")))
        is_token = 1 <= position <= len(tokens)
        if is_token and stamp is not None and stamp in event:
            steps.append(("stamp", event, delay, stamp))
        else:
            steps.append(("send", event, delay if is_token else 0.0))
    return steps


class FakeUpstream:
    """The ASGI app: scripted chat completions and the control endpoints."""

    def __init__(self) -> None:
        self.scripts: deque[Plan] = deque()
        self.records: list[dict] = []
        self.aborted = asyncio.Event()  # set by a reset: streams in flight end

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        method, path = scope["method"], scope["path"]
        if path.endswith("/chat/completions") and method == "POST":
            await self.chat_completions(scope, body, receive, send)
        elif path == "/_scripts" and method == "POST":
            await self.queue_scripts(body, send)
        elif path == "/_requests" and method == "GET":
            await respond(send, 200, self.records)
        elif path == "/_reset" and method == "POST":
            self.reset()
            await respond(send, 200, {"reset": True})
        elif path == "/_health":
            await respond(send, 200, {"ok": True})
        else:
            await respond(send, 404, {"error": {"message": f"no route for {method} {path}"}})

    async def queue_scripts(self, body: bytes, send) -> None:
        try:
            scripts = json.loads(body)
            scripts = scripts if isinstance(scripts, list) else [scripts]
            plans = [compile_script(script) for script in scripts]
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            await respond(send, 400, {"error": {"message": f"bad script: {error}"}})
            return
        self.scripts.extend(plans)
        await respond(send, 200, {"queued": len(self.scripts)})

    def reset(self) -> None:
        self.scripts.clear()
        self.records.clear()
        self.aborted.set()
        self.aborted = asyncio.Event()

    async def chat_completions(self, scope, body: bytes, receive, send) -> None:
        plan = self.scripts.popleft() if self.scripts else compile_script({})
        record = self.record(scope, body) | {"index": len(self.records)}
        self.records.append(record)
        authorization = headers_of(scope).get("authorization")
        if plan.expect_api_key is not None and authorization != f"Bearer {plan.expect_api_key}":
            message = "Incorrect API key provided"
            await respond(send, 401, {"error": {"message": message, "type": "auth"}})
            record.update(completed=True, completed_at=time.monotonic())
            return
        await send(
            {
                "type": "http.response.start",
                "status": plan.status,
                "headers": [(k.encode(), v.encode()) for k, v in plan.headers.items()],
            }
        )
        sender = asyncio.create_task(follow_steps(plan.steps, send))
        watcher = asyncio.create_task(wait_for_disconnect(receive))
        aborted = asyncio.create_task(self.aborted.wait())
        tasks = {sender, watcher, aborted}
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if watcher.done() and not watcher.cancelled():
            record.update(disconnected=True, disconnected_at=watcher.result())
            return
        if sender.done() and not sender.cancelled():
            sender.result()  # a bug in the fake itself should show in its log
            record.update(completed=True, completed_at=time.monotonic())
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    @staticmethod
    def record(scope, body: bytes) -> dict:
        """What the tests may check of a request; the API key itself is left out."""
        headers = headers_of(scope)
        authorization = headers.pop("authorization", None)
        try:
            parsed, raw = json.loads(body), None
        except ValueError:
            parsed, raw = None, body.decode("utf-8", errors="replace")
        return {
            "method": scope["method"],
            "path": scope["path"],
            # Which connection it came on: a client that keeps its connections reuses one.
            "client_port": (scope.get("client") or (None, None))[1],
            "headers": headers,
            "auth": authorization is not None,
            "auth_scheme": authorization.split(" ", 1)[0] if authorization else None,
            "body": parsed,
            "raw_body": raw,
            "started_at": time.monotonic(),
            "completed": False,
            "completed_at": None,
            "disconnected": False,
            "disconnected_at": None,
        }


async def follow_steps(steps: list[tuple], send) -> None:
    for step in steps:
        if step[0] == "stall":
            if step[1] is None:
                await asyncio.Future()  # until cancelled: the client leaves, or a reset
            await asyncio.sleep(float(step[1]))
            continue
        data, delay = step[1], step[2]
        if delay:
            await asyncio.sleep(delay)
        if step[0] == "stamp":
            data = data.replace(step[3], b"%.6f" % time.monotonic())
        await send({"type": "http.response.body", "body": data, "more_body": True})


async def wait_for_disconnect(receive) -> float:
    """Return the monotonic time at which the client went away."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return time.monotonic()


async def read_body(receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return body
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


def headers_of(scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


async def respond(send, status: int, payload) -> None:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def main(argv: list[str] | None = None) -> None:
    import socket

    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--fd", type=int, help="serve on this already-bound socket")
    where.add_argument("--port", type=int, help="serve on 127.0.0.1 at this port")
    args = parser.parse_args(argv)
    config = uvicorn.Config(
        FakeUpstream(),
        port=args.port or 8000,
        # h11: its http.disconnect behaviour is the one described above.
        http="h11",
        loop="asyncio",
        lifespan="off",
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=1,
    )
    # Not uvicorn's ``fd``: it wraps the descriptor as an AF_UNIX socket, so asyncio never
    # sets TCP_NODELAY on the connections, and a token written while the previous one
    # awaits its (delayed) ACK waited up to 40 ms in the kernel (Nagle). A socket made from
    # the descriptor knows it is TCP, and every accepted connection gets TCP_NODELAY.
    sockets = [socket.socket(fileno=args.fd)] if args.fd is not None else None
    uvicorn.Server(config).run(sockets=sockets)


if __name__ == "__main__":
    main()
