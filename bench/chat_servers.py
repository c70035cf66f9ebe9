"""The chat benchmark's servers: streamsite's production command and the baseline, same flags.

Both are uvicorn started the way ``bench.processes.Server`` starts servers (the harness
binds the socket and passes it with ``--fd``): streamsite by ``manage.py serve --workers W``
(``streamsite.management.commands.serve.uvicorn_argv``), the baseline by the same argv with
``bench.chat_baseline:application`` in place of ``streamsite.asgi:application``. With
``--workers 2`` uvicorn's supervisor forks two worker processes sharing the socket; the
harness measures the workers, found as the supervisor's children. The floor
(``bench.floor_ws``, a plain ``websockets`` broadcast server) is one process on the same
kind of socket.
"""

from __future__ import annotations

import sys
import time

from bench.processes import Server, cpu_seconds, status_kb, uvicorn_serving, without_metrics

BASELINE_APP = "bench.chat_baseline:application"
#: streamsite with every metric update a no-op (``bench.processes.without_metrics``).
NOMETRICS = "streamsite-nometrics"


class ChatServer(Server):
    """``app`` (streamsite or baseline) on uvicorn with ``workers`` processes, or the
    ``websockets`` floor (``bench.floor_ws``, one process)."""

    def __init__(
        self, app: str, workers: int, env: dict, log_dir, label: str, deflate: bool = False
    ) -> None:
        if app == NOMETRICS:
            env = without_metrics(env)
        super().__init__("uvicorn", env, log_dir, label)
        self.app = app
        self.workers = workers
        #: streamsite with permessage-deflate accepted (``serve`` declines it): the
        #: production command line with that one flag turned, to measure what it costs.
        self.deflate = deflate

    def command(self, fd: int) -> list[str]:
        if self.app == "streamsite" and self.deflate:
            from streamsite.management.commands.serve import uvicorn_argv

            argv = uvicorn_argv(host="", port=0, workers=self.workers, fd=fd)
            argv[argv.index("--ws-per-message-deflate") + 1] = "true"
            return argv
        if self.app in ("streamsite", NOMETRICS):
            return [
                sys.executable, "manage.py", "serve", "--fd", str(fd),
                "--workers", str(self.workers), "--no-collectstatic",
            ]  # fmt: skip
        if self.app == "floor":
            return [sys.executable, "-m", "bench.floor_ws", "--fd", str(fd)]
        return uvicorn_serving(BASELINE_APP, fd, self.workers)

    def start(self) -> ChatServer:
        super().start()
        if self.workers > 1:
            self._wait_for_workers()
        return self

    def _wait_for_workers(self, timeout: float = 60) -> None:
        """Until every worker exists and has finished starting (its CPU use has settled)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(self.pids) < self.workers:
            time.sleep(0.1)
        pids = self.pids
        if len(pids) < self.workers:
            raise RuntimeError(f"{len(pids)} of {self.workers} workers started:\n{self.log_tail()}")
        while time.monotonic() < deadline:
            before = {pid: cpu_seconds(pid) for pid in pids}
            time.sleep(0.5)
            if all(cpu_seconds(pid) - before[pid] < 0.05 for pid in pids):
                return

    def rss_kb(self) -> int:
        return status_kb(self.pids, "VmRSS")

    def threads(self) -> int:
        return status_kb(self.pids, "Threads")
