"""Issue #13's fault campaign on live servers (``make faults``; the small size runs in CI).

Forced reconnects, a Redis restart, server restarts (SIGTERM; SIGKILL of the supervisor)
and a rolling restart of two server processes, all under load: every stored message and
notification reaches every reader once, in order. Then many abrupt disconnects: nothing
left behind. ``FAULTS_SIZE=full`` is the documented run; results go to
bench/results/*-faults.jsonl.
"""

import asyncio
import json
import os
import re
import signal
import time

import pytest
from asgiref.sync import sync_to_async

from chat.tests.factories import room_with
from faults import disconnects, scenarios
from streamsite.testing.live_server import session_cookies

pytestmark = pytest.mark.live_server

FULL = os.environ.get("FAULTS_SIZE") == "full"
READERS = 40 if FULL else 6
WRITERS = 4 if FULL else 2
RECONNECTS = 100 if FULL else 10
DISCONNECTS = int(os.environ.get("FAULTS_DISCONNECTS", 10_000 if FULL else 600))
#: Disconnects before the baseline: the allocator's arenas grow over the first thousand or
#: so (+6.8 MB over 1,500, then +0.7 MB over the next 1,500 on uvicorn + Redis), so memory
#: is judged only once they have.
WARMUP = 1600
#: Descriptors the server may hold over its baseline once the disconnects are done. CI
#: twice ended one plain socket over (34 -> 35 -> 35, 30 -> 31 -> 31: the same at halfway
#: and after, not growing), most likely a closed connection's socket in a reference cycle,
#: open until a garbage collection reaches it (rarer under streamsite/gc_policy.py). A
#: leak grows with the disconnects, which this still fails on.
LINGERING_FDS = 2


def record(result: dict) -> None:
    print(json.dumps(result), flush=True)
    if os.environ.get("FAULTS_RESULTS"):  # python -m faults (make faults)
        with open(os.environ["FAULTS_RESULTS"], "a") as file:
            file.write(json.dumps(result) + "\n")


def assert_clean(servers) -> None:
    for server in servers:
        log = server.log_path.read_text(errors="replace")
        assert "Traceback" not in log and not re.search(r"\bERROR\b", log), log[-3000:]


@pytest.fixture
def layer_here(settings, private_redis):
    """Notifications created in this process publish to the servers' Redis."""
    from streamsite.env import channel_layer_from_url

    settings.CHANNEL_LAYERS = {"default": channel_layer_from_url(private_redis.url)}
    return private_redis


async def people(make_user, count: int):
    await sync_to_async(room_with)(scenarios.ROOM)
    users = [await sync_to_async(make_user)(f"f{n}") for n in range(count)]
    cookies = [await sync_to_async(session_cookies)(u) for u in users]
    return users, cookies


def judged(result: dict) -> None:
    record(result)
    assert result["passed"], result


@pytest.mark.timeout(600)
async def test_faults_under_load_on_two_workers(live_server_factory, layer_here, make_user):
    """a: forced reconnects; b: Redis restart, SIGTERM restart, SIGKILL of the supervisor."""
    env = {"REDIS_URL": layer_here.url, "CHAT_RATE_LIMIT_MESSAGES": "1000000"}
    server = await sync_to_async(live_server_factory)("uvicorn", workers=2, **env)
    users, cookies = await people(make_user, READERS)

    async def under_load(name: str, fault) -> None:
        load = await scenarios.open_load([server.ws_url], users, cookies, WRITERS)
        started = time.monotonic()
        try:
            writing = asyncio.create_task(scenarios.write(load, None))
            await asyncio.sleep(0.5)  # some traffic before the fault (load, not a wait)
            await fault(load)
            await asyncio.sleep(0.5)  # and some after it
            result = await scenarios.settle(load, name, writing)
        finally:
            await scenarios.close(load)
        result["seconds"] = round(time.monotonic() - started, 2)
        judged(result)

    async def reconnects(load):
        await scenarios.forced_reconnects(load, RECONNECTS)

    async def redis_restart(load):
        await asyncio.to_thread(layer_here.restart, keep_data=True)

    async def sigterm(load):
        await asyncio.to_thread(server.restart)

    async def sigkill(load):
        from streamsite.tests.test_shutdown_live import worker_pids

        await scenarios.kill_supervisor_and_restart(server, worker_pids(server.pid))

    await under_load("forced_reconnects", reconnects)
    await under_load("redis_restart", redis_restart)
    await under_load("sigterm_restart", sigterm)
    await under_load("sigkill_supervisor", sigkill)
    assert_clean([server])


@pytest.mark.timeout(600)
async def test_rolling_restart_of_two_processes(live_server_factory, layer_here, make_user):
    """c: two ``serve --workers 1`` on one Redis, restarted one at a time under load; the
    clients of the one going down reconnect to the other and resume."""
    env = {"REDIS_URL": layer_here.url, "CHAT_RATE_LIMIT_MESSAGES": "1000000"}
    servers = [await sync_to_async(live_server_factory)("uvicorn", **env) for _ in range(2)]
    users, cookies = await people(make_user, READERS)
    load = await scenarios.open_load([s.ws_url for s in servers], users, cookies, WRITERS)
    started = time.monotonic()
    try:
        writing = asyncio.create_task(scenarios.write(load, None))
        for server in servers:
            await asyncio.sleep(0.5)  # traffic between the restarts (load, not a wait)
            os.kill(server.pid, signal.SIGTERM)
            await asyncio.to_thread(server.process.wait, 10)
            await asyncio.to_thread(server.start)
        result = await scenarios.settle(load, "rolling_restart", writing)
    finally:
        await scenarios.close(load)
    result["seconds"] = round(time.monotonic() - started, 2)
    judged(result)
    assert_clean(servers)


METRICS_TOKEN = "faults-campaign-token"


@pytest.mark.timeout(900)
async def test_abrupt_disconnects_leave_nothing_behind(live_server_factory, layer_here, make_user):
    """d: streams and sockets reset by their clients (no goodbye), ``DISCONNECTS`` of them
    after a warm-up: file descriptors, database connections, group members, tasks, open
    streams, sockets and hub subscriptions back where they were; memory not growing with
    the number of disconnects."""
    import httpx

    env = {"REDIS_URL": layer_here.url, "METRICS_TOKEN": METRICS_TOKEN}
    server = await sync_to_async(live_server_factory)("uvicorn", **env)
    _, cookies = await people(make_user, READERS)
    headers = ["; ".join(f"{k}={v}" for k, v in c.items()) for c in cookies]
    host, port = server.url.removeprefix("http://").rstrip("/").split(":")
    target = disconnects.Target(
        host, int(port), "/notifications/stream/", f"/ws/chat/{scenarios.ROOM}/"
    )
    pid = server.pid

    async def figures() -> dict:
        # /proc first: the server may still hold this reading's own /metrics connection
        # for a moment after the response (one file descriptor more, now and then).
        process = disconnects.process_figures(pid)
        async with httpx.AsyncClient(timeout=10) as client:
            page = await client.get(
                f"{server.url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
            )
        page.raise_for_status()
        return (
            disconnects.gauges(page.text)
            | process
            | {
                "db_connections": await sync_to_async(database_connections)(),
                "group_members": layer_group_members(layer_here.url),
            }
        )

    leak_free = ("fds", "db_connections", "group_members", *disconnects.GAUGES)

    async def settled(baseline: dict | None) -> dict:
        """The figures once every connection is released and they have stopped moving
        (and, with a baseline, are back to it), polled up to 60 s."""
        deadline = time.monotonic() + 60
        earlier = None
        while True:
            now = await figures()
            released = now["streams_open"] == now["sockets_open"] == 0
            back = baseline is None or all(back_to(baseline, now, k) for k in leak_free)
            # Unchanged since a reading taken after the task gauge was refreshed at least
            # once (every 2 s): what is closing has closed.
            still = earlier is not None and all(now[k] == earlier[k] for k in leak_free)
            if (released and back and still) or time.monotonic() > deadline:
                return now
            earlier = now
            await asyncio.sleep(2.5)  # polling the server's own figures, not a timing guess

    warmup = await disconnects.vanish_many(target, headers, WARMUP)
    baseline = await settled(None)
    started = time.monotonic()
    taken = await disconnects.vanish_many(target, headers, DISCONNECTS // 2)
    halfway = await settled(baseline)
    taken += await disconnects.vanish_many(target, headers, DISCONNECTS - DISCONNECTS // 2)
    seconds = time.monotonic() - started
    after = await settled(baseline)
    # Memory: CPython rarely hands freed memory back, and the first disconnects grow the
    # allocator's arenas (hence WARMUP), so "back to the baseline" is "not growing with the
    # disconnects": the second half may add at most 1 KB a disconnect (the issue saw 3.4 KB
    # under runserver, without a plateau), with 512 KB of slack (28-60 KB seen over 200).
    second_half_kb = after["rss_kb"] - halfway["rss_kb"]
    leaked = {k: (baseline[k], after[k]) for k in leak_free if not back_to(baseline, after, k)}
    result = {
        "scenario": "abrupt_disconnects",
        "disconnects": DISCONNECTS,
        "taken_on": taken,
        "warmup": warmup,
        "seconds": round(seconds, 2),
        "baseline": baseline,
        "halfway": halfway,
        "after": after,
        "leaked": leaked,
        "rss_growth_kb": after["rss_kb"] - baseline["rss_kb"],
        "rss_second_half_kb": second_half_kb,
        "passed": taken == DISCONNECTS
        and not leaked
        and second_half_kb < 512 + (DISCONNECTS - DISCONNECTS // 2),
    }
    judged(result)
    assert_clean([server])


def back_to(baseline: dict, now: dict, key: str) -> bool:
    """Whether the figure ``key`` is back to its baseline (``LINGERING_FDS`` for ``fds``)."""
    return now[key] <= baseline[key] + (LINGERING_FDS if key == "fds" else 0)


def database_connections() -> int:
    """Connections to the test database, other than this one (PostgreSQL; 0 on SQLite)."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return 0
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


def layer_group_members(url: str) -> int:
    """Members of every channel-layer group in the servers' Redis (channels-redis keys)."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        return sum(client.zcard(key) for key in client.scan_iter("asgi:group:*"))
    finally:
        client.close()
