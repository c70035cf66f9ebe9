"""Issue #13's fault campaign on live servers (``make faults``; the small size runs in CI).

Forced reconnects, a Redis restart, server restarts (SIGTERM; SIGKILL of the supervisor)
and a rolling restart of two server processes, all under load: every stored message and
notification reaches every reader once, in order. ``FAULTS_SIZE=full`` is the documented
run; results go to bench/results/*-faults.jsonl.
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
from faults import scenarios
from streamsite.testing.live_server import session_cookies

pytestmark = pytest.mark.live_server

FULL = os.environ.get("FAULTS_SIZE") == "full"
READERS = 40 if FULL else 6
WRITERS = 4 if FULL else 2
RECONNECTS = 100 if FULL else 10


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
