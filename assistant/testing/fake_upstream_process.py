"""Start the fake upstream in a process of its own, and script it from tests.

The same approach as ``streamsite.testing.live_server``: the test process binds a free
port and hands the listening socket's descriptor to the child, so there is no race for
the port, and connections made before the child accepts simply queue. No Django here:
benchmarks and scripts can use it as well as tests.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from streamsite.testing.child_process import start_on_socket, stop_group
from streamsite.testing.server_log import watch

PROJECT_DIR = Path(__file__).resolve().parents[2]
STARTUP_SECONDS = 30
POLL_SECONDS = 0.02
CONTROL_TIMEOUT = 10


class FakeUpstreamProcess:
    """One fake upstream server: ``start()``, script it, read what it received, ``stop()``.

    Each control method has an async twin (``a`` prefix) for async tests, whose event loop
    must keep running (a provider closing its stream) while they wait.
    """

    def __init__(self) -> None:
        self.process: subprocess.Popen | None = None
        self.port: int | None = None
        handle, path = tempfile.mkstemp(prefix="streamsite-fake-upstream-", suffix=".log")
        os.close(handle)
        self.log_path = Path(path)
        self.log_watch = watch("fake upstream", self.log_path)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """What ``LLM_BASE_URL`` should be: the server's ``/v1``."""
        return f"{self.url}/v1"

    def start(self) -> FakeUpstreamProcess:
        """Start the server and return once it answers."""
        self.process, self.port = start_on_socket(
            lambda fd: [sys.executable, "-m", "assistant.testing.fake_upstream", "--fd", str(fd)],
            cwd=PROJECT_DIR,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            log_path=self.log_path,
        )
        self._wait_until_ready()
        return self

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the fake upstream exited:\n{self.log()}")
            try:
                httpx.get(f"{self.url}/_health", timeout=2).raise_for_status()
            except httpx.TransportError:
                time.sleep(POLL_SECONDS)  # queued until it accepts: try again after a beat
                continue
            return
        self.stop()
        raise RuntimeError(f"the fake upstream did not answer in {STARTUP_SECONDS}s:\n{self.log()}")

    def stop(self, timeout: float = 10) -> None:
        """Stop the server: SIGTERM to its process group, SIGKILL if it lingers."""
        stop_group(self.process, timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]

    # Control, for sync tests -----------------------------------------------------------

    def script(self, **script) -> None:
        """Queue one script (keys: see ``assistant.testing.fake_upstream``)."""
        self.scripts([script])

    def scripts(self, scripts: list[dict]) -> None:
        """Queue scripts, each answering one later chat-completions request, in order."""
        _checked(httpx.post(f"{self.url}/_scripts", json=scripts, timeout=CONTROL_TIMEOUT))

    def requests(self) -> list[dict]:
        """The chat-completions requests received since the last reset, oldest first."""
        return _checked(httpx.get(f"{self.url}/_requests", timeout=CONTROL_TIMEOUT))

    def reset(self) -> None:
        """Forget scripts and requests; end the streams in flight."""
        _checked(httpx.post(f"{self.url}/_reset", timeout=CONTROL_TIMEOUT))

    def wait_disconnected(self, index: int = -1, timeout: float = 5) -> dict:
        """Return request ``index``'s record once it shows the client left; fail at the deadline."""
        deadline = time.monotonic() + timeout
        while True:
            record = _at(self.requests(), index)
            if record is not None and record["disconnected"]:
                return record
            if time.monotonic() >= deadline:
                raise AssertionError(_not_disconnected(index, timeout, record))
            time.sleep(POLL_SECONDS)

    # Control, for async tests ----------------------------------------------------------

    async def ascript(self, **script) -> None:
        await self.ascripts([script])

    async def ascripts(self, scripts: list[dict]) -> None:
        async with httpx.AsyncClient(timeout=CONTROL_TIMEOUT) as client:
            _checked(await client.post(f"{self.url}/_scripts", json=scripts))

    async def arequests(self) -> list[dict]:
        async with httpx.AsyncClient(timeout=CONTROL_TIMEOUT) as client:
            return _checked(await client.get(f"{self.url}/_requests"))

    async def areset(self) -> None:
        async with httpx.AsyncClient(timeout=CONTROL_TIMEOUT) as client:
            _checked(await client.post(f"{self.url}/_reset"))

    # The same signature as its sync twin, hence ``timeout`` (not an asyncio.timeout).
    async def await_disconnected(self, index: int = -1, timeout: float = 5) -> dict:  # noqa: ASYNC109
        """``wait_disconnected`` that lets the event loop run while it waits."""
        deadline = time.monotonic() + timeout
        while True:
            record = _at(await self.arequests(), index)
            if record is not None and record["disconnected"]:
                return record
            if time.monotonic() >= deadline:
                raise AssertionError(_not_disconnected(index, timeout, record))
            await asyncio.sleep(POLL_SECONDS)


def _checked(response: httpx.Response):
    if response.status_code != 200:
        raise AssertionError(f"the fake upstream answered {response.status_code}: {response.text}")
    return response.json()


def _at(records: list[dict], index: int) -> dict | None:
    try:
        return records[index]
    except IndexError:
        return None


def _not_disconnected(index: int, timeout: float, record: dict | None) -> str:
    if record is None:
        return f"the fake upstream received no request {index} within {timeout}s"
    return f"request {index} to the fake upstream was still connected after {timeout}s: {record}"
