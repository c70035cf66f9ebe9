"""Run the production server: uvicorn (uvloop, httptools) with several worker processes."""

import logging
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from chat.protocol import MAX_FRAME_BYTES


def fresh_metrics_dir() -> str:
    """Return an empty directory for this run's Prometheus files (one set per worker).

    ``PROMETHEUS_MULTIPROC_DIR`` if set (emptied: a previous run's counters would be added
    to this one's), else a new temporary directory.
    """
    chosen = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "").strip()
    if not chosen:
        return tempfile.mkdtemp(prefix="streamsite-metrics-")
    path = Path(chosen)
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()
    return str(path)


#: How long ``serve`` waits for its port to be free: the workers of a predecessor that was
#: killed outright end by themselves (``streamsite.worker_process``), within a second or two.
PORT_WAIT_SECONDS = 15
#: uvicorn's logging configuration under LOG_FORMAT=json.
UVICORN_JSON_LOG_CONFIG = (
    Path(__file__).resolve().parents[2] / "observability" / "uvicorn_log_config.json"
)


def wait_for_port(host: str, port: int, seconds: float) -> bool:
    """Wait until ``host:port`` can be bound (as uvicorn binds it); False if it never was."""
    deadline = time.monotonic() + seconds
    while True:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
                return True
            except OSError:
                if time.monotonic() >= deadline:
                    return False
        time.sleep(0.1)  # the holder is another process: nothing here to wait on


def uvicorn_argv(*, host: str, port: int, workers: int, fd: int | None = None) -> list[str]:
    """Return the uvicorn command line that serves streamsite in production.

    uvicorn rather than daphne because it applies flow control: a client that reads slowly
    pauses its own stream instead of growing the server's memory. Its sans-I/O WebSocket
    protocol keeps no tasks per connection and writes a frame without suspending, which
    the chat's fan-out relies on for speed (docs/architecture.md, "Servers").
    """
    argv = [
        sys.executable, "-m", "uvicorn", "streamsite.asgi:application",
        "--loop", "uvloop", "--http", "httptools", "--ws", "websockets-sansio",
        "--workers", str(workers), "--no-access-log", "--proxy-headers",
        "--timeout-graceful-shutdown", "5",
        # The chat protocol's frame limit, enforced by the server before it buffers more
        # (docs/protocol.md: a bigger frame closes the socket with 1009).
        "--ws-max-size", str(MAX_FRAME_BYTES),
        # No permessage-deflate, though Chromium offers it on every socket: chat frames are
        # small JSON, and compression doubled the memory per socket and the CPU per
        # delivery (docs/benchmarks.md), and per-connection compressors rule out writing
        # one pre-built frame to every socket (streamsite/websocket.py). runserver's
        # daphne accepts no compression either.
        "--ws-per-message-deflate", "false",
    ]  # fmt: skip
    if fd is not None:
        argv += ["--fd", str(fd)]
    else:
        argv += ["--host", host, "--port", str(port)]
    if settings.LOG_FORMAT == "json":
        # uvicorn's supervisor logs before any worker loads Django's LOGGING: its lines
        # (and the workers' until then) are JSON through this configuration.
        argv += ["--log-config", str(UVICORN_JSON_LOG_CONFIG)]
    return argv


class Command(BaseCommand):
    help = (
        "Collect static files, then replace this process with uvicorn serving streamsite "
        "with WORKERS processes. Several workers need REDIS_URL (one channel layer for all)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
        parser.add_argument("--fd", type=int, help="Serve on this already-bound socket.")
        parser.add_argument("--no-collectstatic", action="store_true")

    def handle(self, *args, host, port, workers, fd, no_collectstatic, **options):
        if workers < 1:
            raise CommandError("--workers must be at least 1")
        layer = settings.CHANNEL_LAYERS["default"]["BACKEND"]
        if workers > 1 and layer.endswith("InMemoryChannelLayer"):
            raise CommandError(
                f"{workers} workers on the in-memory channel layer would not see each other's "
                "events: set REDIS_URL, or run with --workers 1."
            )
        if settings.DEBUG:
            self.stderr.write(self.style.WARNING("Warning: DEBUG is on; set DJANGO_DEBUG=0."))
        if not no_collectstatic:
            call_command("collectstatic", interactive=False, verbosity=0)
        argv = uvicorn_argv(host=host, port=port, workers=workers, fd=fd)
        where = f"fd {fd}" if fd is not None else f"http://{host}:{port}/"
        serving = f"Serving streamsite on {where} with {workers} worker(s)"
        if settings.LOG_FORMAT == "json":  # every line of the server's output is JSON
            logging.getLogger("streamsite.serve").info(serving)
        else:
            self.stdout.write(serving)
            self.stdout.flush()
        if shutil.which(argv[0]) is None and not os.path.exists(argv[0]):
            raise CommandError(f"cannot find the Python interpreter {argv[0]}")
        if fd is None and not wait_for_port(host, port, PORT_WAIT_SECONDS):
            raise CommandError(f"{host}:{port} is in use (waited {PORT_WAIT_SECONDS} s)")
        # Every worker writes its metrics there; /metrics adds them up (streamsite.observability).
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = fresh_metrics_dir()
        # exec, so the server has this process' pid and signals reach it directly.
        os.execv(argv[0], argv)
