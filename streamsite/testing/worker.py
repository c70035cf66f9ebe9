"""Run the task framework's worker (``manage.py db_worker``) as a real process for tests.

It uses the test database (and the test process' channel layer settings), so jobs a test
enqueues and commits are what it runs. Stopped through its process group, like servers.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from django.conf import settings

from streamsite.testing.child_process import end_with_this_process, stop_group
from streamsite.testing.live_server import database_url_for_tests
from streamsite.testing.server_log import watch

BASE_DIR = Path(settings.BASE_DIR)


class TaskWorker:
    """One ``db_worker`` process; ``extra_env`` adds settings (``MEDIA_ROOT``, say)."""

    def __init__(self, *, extra_env: dict[str, str] | None = None) -> None:
        self.extra_env = extra_env or {}
        self.process: subprocess.Popen | None = None
        handle, path = tempfile.mkstemp(prefix="streamsite-worker-", suffix=".log")
        os.close(handle)
        self.log_path = Path(path)
        self.log_watch = watch("db_worker", self.log_path)

    @property
    def pid(self) -> int:
        assert self.process is not None, "worker not started"
        return self.process.pid

    def start(self) -> TaskWorker:
        env = {
            **os.environ,
            "DATABASE_URL": database_url_for_tests(),
            "PYTHONUNBUFFERED": "1",
            **self.extra_env,
        }
        command = [
            sys.executable, "manage.py", "db_worker",
            "--no-reload", "--no-startup-delay", "--interval", "0.05",
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command,
                cwd=BASE_DIR,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=end_with_this_process(),
            )
        return self

    def wait_started(self, seconds: float = 30) -> None:
        """Wait until the worker logs that it polls the queue (or fail with its log)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"db_worker exited with {self.process.returncode}:\n{self.log()}"
                )
            if "Starting worker" in self.log():
                return
            time.sleep(0.05)
        raise RuntimeError(f"db_worker did not start within {seconds}s:\n{self.log()}")

    def stop(self, timeout: float = 10) -> None:
        stop_group(self.process, timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]
