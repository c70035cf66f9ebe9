"""Run the real ASGI application in a separate process for end-to-end tests.

``LiveServer`` starts daphne (the development server behind ``runserver``) or the
production command (``manage.py serve``: uvicorn) on a socket the test process has already
bound to a free port, so there is no race for the port; it waits until the server answers
HTTP, and stops it by its process group. ``runserver`` itself (what wraps daphne in
development) binds its own port, so it gets a free one just before it starts.
``log_mark``/``log_since`` give what a server logged during a test. The server uses the
test database and the same channel layer as the tests, so data a test commits is what the
server sees.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from django.conf import settings
from django.db import connection

from streamsite.testing.child_process import end_with_this_process, start_on_socket, stop_group
from streamsite.testing.server_log import watch

BASE_DIR = Path(settings.BASE_DIR)
#: ``runserver`` is the development command itself (daphne, wrapped as ``runserver`` wraps
#: it); ``daphne`` serves the bare ASGI application, as runserver's daphne does.
KINDS = ("daphne", "uvicorn", "runserver")
STARTUP_SECONDS = 60


def database_url_for_tests() -> str:
    """Return a DATABASE_URL naming the test database the test process is using."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{Path(db['NAME']).resolve()}"
    user = db.get("USER") or ""
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgres://{auth}{db.get('HOST') or '127.0.0.1'}{port}/{db['NAME']}"


def session_cookies(user) -> dict[str, str]:
    """Cookies that make an HTTP client (or browser) logged in as ``user`` on a live server.

    The session is stored in the shared test database, so the server process finds it.
    """
    from django.test import Client

    client = Client()
    client.force_login(user)
    name = settings.SESSION_COOKIE_NAME
    return {name: client.cookies[name].value}


class LiveServer:
    """One server process: ``kind`` is ``daphne`` or ``uvicorn`` (the production command,
    with ``workers`` worker processes; more than one needs a Redis channel layer)."""

    def __init__(
        self, kind: str, *, extra_env: dict[str, str] | None = None, workers: int = 1
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown server kind {kind!r}")
        self.kind = kind
        self.workers = workers
        self.extra_env = extra_env or {}
        self.process: subprocess.Popen | None = None
        self.port: int | None = None
        handle, path = tempfile.mkstemp(prefix=f"streamsite-{kind}-", suffix=".log")
        os.close(handle)
        self.log_path = Path(path)
        # Every test fails if this server logs an error it did not expect (server_log).
        self.log_watch = watch(f"{kind} server", self.log_path)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def expect_log(self, pattern: str) -> None:
        """Declare that this server may log a record matching ``pattern`` in this test."""
        self.log_watch.expect(pattern)

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None, "server not started"
        return self.process.pid

    def environment(self) -> dict[str, str]:
        env = {
            **os.environ,
            "DATABASE_URL": database_url_for_tests(),
            "PYTHONUNBUFFERED": "1",
            # Notice lost memberships within seconds (a test restarting Redis, say).
            "STREAM_HUB_HEARTBEAT_SECONDS": "1",
        }
        if self.kind == "uvicorn":
            # The production configuration: DEBUG off, a real secret, hashed static files.
            env |= {
                "DJANGO_DEBUG": "0",
                # The test process' key: sessions it creates must be valid here too.
                "DJANGO_SECRET_KEY": settings.SECRET_KEY,
                "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            }
        return env | self.extra_env

    def command(self, fd: int) -> list[str]:
        if self.kind == "runserver":
            # runserver cannot serve an inherited socket: it binds the port itself.
            return [
                sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{self.port}",
            ]  # fmt: skip
        if self.kind == "daphne":
            return [sys.executable, "-m", "daphne", "--fd", str(fd), "streamsite.asgi:application"]
        return [
            sys.executable, "manage.py", "serve", "--fd", str(fd), "--workers", str(self.workers),
        ]  # fmt: skip

    def start(self) -> LiveServer:
        """Start the server and return once it answers HTTP requests."""
        if self.kind == "runserver":
            self._start_runserver()
            return self
        # The same port again on restart, so browsers reconnect to where they were.
        self.process, self.port = start_on_socket(
            self.command,
            cwd=BASE_DIR,
            env=self.environment(),
            log_path=self.log_path,
            port=self.port or 0,
        )
        self._wait_until_ready()
        return self

    def _start_runserver(self) -> None:
        """Start ``manage.py runserver`` on a free port (it binds the port itself)."""
        if self.port is None:
            with socket.socket() as probe:  # a free port; the server binds it a moment later
                probe.bind(("127.0.0.1", 0))
                self.port = probe.getsockname()[1]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(-1),
                cwd=BASE_DIR,
                env=self.environment(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=end_with_this_process(),
            )
        self._wait_until_ready()

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.kind} exited with {self.process.returncode}:\n{self.log()}"
                )
            try:
                response = httpx.get(f"{self.url}/accounts/login/", timeout=2)
            except httpx.TransportError:
                # Not accepting yet: the listening socket queues us, so retry after a beat.
                time.sleep(0.05)
                continue
            if response.status_code == 200:
                return
            raise RuntimeError(
                f"{self.kind} answered {response.status_code} to the login page:\n{self.log()}"
            )
        self.stop()
        raise RuntimeError(f"{self.kind} did not answer within {STARTUP_SECONDS}s:\n{self.log()}")

    def stop(self, timeout: float = 10) -> None:
        """Stop the server: SIGTERM to its process group, SIGKILL if it lingers."""
        stop_group(self.process, timeout)

    def restart(self) -> None:
        """Stop the server and start it again on the same port."""
        self.stop()
        self.start()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]

    def log_mark(self) -> int:
        """Where the log ends now: ``log_since(mark)`` is what the server wrote after."""
        return self.log_path.stat().st_size

    def log_since(self, mark: int) -> str:
        with self.log_path.open("rb") as log:
            log.seek(mark)
            return log.read().decode(errors="replace")


@asynccontextmanager
async def uvicorn_in_this_process(app, **options):
    """Serve the ASGI ``app`` with uvicorn on this test's event loop; yield its port.

    For tests of code that reaches into uvicorn's protocol objects (``streamsite.websocket``,
    ``streamsite.http_chunks``): the app and the test share the process, so the app can
    report what it saw. ``options`` go to ``uvicorn.Config`` (the protocol to use).
    """
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)  # clients may connect at once: the kernel queues them for uvicorn
    config = uvicorn.Config(app, lifespan="off", log_level="warning", **options)
    instance = uvicorn.Server(config)
    task = asyncio.create_task(instance.serve(sockets=[sock]))
    try:
        yield sock.getsockname()[1]
    finally:
        instance.should_exit = True
        await task
