"""Stopping ``manage.py serve`` with open streams and sockets, gracefully or not.

Regressions for issue #13: on SIGTERM the streams did not end, uvicorn's graceful timeout
ran out and it cancelled every stream's task with an error; on SIGKILL of the supervisor
its workers lived on, holding the port, so the restart failed with "address in use".
"""

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from asgiref.sync import sync_to_async

from chat.protocol import CLOSE_SERVICE_RESTART
from chat.tests.factories import room_with
from streamsite.testing.chat import RemoteChatSocket
from streamsite.testing.child_process import stop_group
from streamsite.testing.live_server import BASE_DIR, LiveServer, session_cookies
from streamsite.testing.sse import StreamReader

pytestmark = pytest.mark.live_server

STREAMS = SOCKETS = 40
#: uvicorn's graceful timeout (``serve``): the process must be gone well before it.
GRACEFUL_TIMEOUT_SECONDS = 5


def worker_pids(parent: int) -> set[int]:
    """uvicorn's workers: ``multiprocessing`` children of ``parent`` (not its resource
    tracker, another child, which ends by itself when the parent's pipe closes)."""
    children = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            command = (entry / "cmdline").read_bytes()
            if int(fields[1]) == parent and b"spawn_main" in command:
                children.add(int(entry.name))
    return children


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended


async def wait_until(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s: {what}")
        await asyncio.sleep(0.05)  # polling a condition the kernel holds (no event to await)


def assert_clean_log(server) -> None:
    log = server.log_path.read_text(errors="replace")
    for bad in ("Traceback", "CancelledError", "graceful shutdown exceeded", "Cancel "):
        assert bad not in log, log[-4000:]
    assert not re.search(r"\bERROR\b", log), log[-4000:]


@pytest.fixture
async def serve_two_workers(live_server_factory, private_redis):
    """``manage.py serve --workers 2`` on a Redis of the test's own."""
    return await sync_to_async(live_server_factory)(
        "uvicorn", workers=2, REDIS_URL=private_redis.url
    )


@pytest.mark.timeout(120)
async def test_sigterm_ends_every_stream_and_socket_at_once(serve_two_workers, make_user):
    """SSE streams end and chat sockets close with 1012 as soon as SIGTERM arrives; the
    server is gone well within its graceful timeout, with nothing logged as an error."""
    server = serve_two_workers
    await sync_to_async(room_with)("lobby")
    users = [await sync_to_async(make_user)(f"term{n}") for n in range(max(STREAMS, SOCKETS))]
    async with contextlib.AsyncExitStack() as stack:
        readers = []
        for user in users[:STREAMS]:
            cookies = await sync_to_async(session_cookies)(user)
            client = await stack.enter_async_context(
                httpx.AsyncClient(base_url=server.url, cookies=cookies, timeout=20)
            )
            response = await stack.enter_async_context(
                client.stream("GET", "/notifications/stream/")
            )
            assert response.status_code == 200
            reader = StreamReader(response.aiter_raw())
            await reader.until(lambda e: e["event"] == "unread")
            readers.append(reader)
        sockets = []
        for user in users[:SOCKETS]:
            cookies = await sync_to_async(session_cookies)(user)
            socket = RemoteChatSocket(f"{server.ws_url}/ws/chat/lobby/", cookies)
            sockets.append(await socket.connect())
            stack.push_async_callback(socket.disconnect)
        await asyncio.gather(*(socket.joined() for socket in sockets))

        started = time.monotonic()
        os.kill(server.pid, signal.SIGTERM)
        await asyncio.gather(*(reader.until_end(GRACEFUL_TIMEOUT_SECONDS) for reader in readers))
        codes = await asyncio.gather(
            *(socket.closed(GRACEFUL_TIMEOUT_SECONDS) for socket in sockets)
        )
        ended = time.monotonic() - started
        await asyncio.to_thread(server.process.wait, GRACEFUL_TIMEOUT_SECONDS)
        gone = time.monotonic() - started

    assert set(codes) == {CLOSE_SERVICE_RESTART}
    assert ended < 2, f"streams and sockets took {ended:.1f} s to end"
    assert gone < GRACEFUL_TIMEOUT_SECONDS - 1, f"the server took {gone:.1f} s to exit"
    assert server.process.returncode == 0
    assert_clean_log(server)


@pytest.mark.timeout(120)
async def test_sigkill_of_serve_ends_its_workers_and_a_restart_comes_up(serve_two_workers, user):
    """The supervisor is killed outright: its workers end with it (gracefully: the open
    stream ends), so the port is free and the same command comes up again on it."""
    server = serve_two_workers
    workers = worker_pids(server.pid)
    assert len(workers) == 2, workers
    cookies = await sync_to_async(session_cookies)(user)
    async with (
        httpx.AsyncClient(base_url=server.url, cookies=cookies, timeout=20) as client,
        client.stream("GET", "/notifications/stream/") as response,
    ):
        reader = StreamReader(response.aiter_raw())
        await reader.until(lambda e: e["event"] == "unread")
        os.kill(server.pid, signal.SIGKILL)
        await asyncio.to_thread(server.process.wait, 10)
        await reader.until_end(GRACEFUL_TIMEOUT_SECONDS)
    await wait_until(
        lambda: not any(alive(pid) for pid in workers),
        GRACEFUL_TIMEOUT_SECONDS,
        "the workers of a killed supervisor ended",
    )
    await asyncio.to_thread(server.start)  # binds the same port: fails if it is held
    response = await asyncio.to_thread(httpx.get, f"{server.url}/accounts/login/", timeout=10)
    assert response.status_code == 200
    assert_clean_log(server)


async def answers(url: str, seconds: float) -> bool:
    """Whether ``url`` answers 200 within ``seconds``."""
    deadline = time.monotonic() + seconds
    async with httpx.AsyncClient(timeout=2) as client:
        while time.monotonic() < deadline:
            try:
                if (await client.get(url)).status_code == 200:
                    return True
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)  # not listening yet: poll until it is (bounded)
    return False


@pytest.mark.timeout(180)
async def test_serve_started_again_right_after_a_sigkill_comes_up(private_redis, transactional_db):
    """The issue's own steps: ``serve --port P --workers 2``, SIGKILL, the same command at
    once. It waits for the old workers to free the port instead of failing."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = LiveServer("uvicorn", extra_env={"REDIS_URL": private_redis.url}).environment()
    command = [sys.executable, "manage.py", "serve", "--port", str(port), "--workers", "2"]
    url = f"http://127.0.0.1:{port}/accounts/login/"
    log_path = LiveServer("uvicorn").log_path
    started = []

    def start() -> subprocess.Popen:
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                command, cwd=BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        started.append(process)
        return process

    try:
        first = start()
        assert await answers(url, 60), log_path.read_text()[-3000:]
        os.kill(first.pid, signal.SIGKILL)
        await asyncio.to_thread(first.wait, 10)
        second = start()
        assert await answers(url, 60), log_path.read_text()[-3000:]
        assert second.poll() is None
        assert "address already in use" not in log_path.read_text().lower()
    finally:
        for process in started:
            with contextlib.suppress(ProcessLookupError):  # its group may be gone already
                await asyncio.to_thread(stop_group, process)
