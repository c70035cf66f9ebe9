"""Servers started by tests in processes of their own, on a socket the test bound.

No Django here: the fake upstream (``assistant.testing``) uses it too. The test process
binds the listening socket and passes its descriptor, so there is no race for a free port,
and each child runs in its own process group, so stopping it reaches its workers too.
Each child also gets SIGTERM from the kernel when the test process dies, however it dies
(``end_with_this_process``): a SIGKILLed pytest leaves no server holding a port.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

from streamsite.worker_process import signal_when_parent_dies


def end_with_this_process():
    """A ``preexec_fn`` for ``Popen``: the child gets SIGTERM when this process dies.

    Call ``Popen`` from a thread that lives as long as the child (the kernel signals when
    the forking thread ends): the main thread, or a long-lived executor's.
    """
    parent_pid = os.getpid()
    return lambda: signal_when_parent_dies(parent_pid)


def start_on_socket(
    command_for_fd, *, cwd: Path, env: dict[str, str], log_path: Path, port: int = 0
) -> tuple[subprocess.Popen, int]:
    """Bind 127.0.0.1:``port`` (0: any), start ``command_for_fd(fd)`` with the socket.

    Returns the process and the port. The child's output is appended to ``log_path``.
    """
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(1024)
    port = listener.getsockname()[1]
    fd = listener.fileno()
    try:
        with log_path.open("ab") as log:  # the child keeps its own descriptor
            process = subprocess.Popen(
                command_for_fd(fd),
                cwd=cwd,
                env=env,
                pass_fds=(fd,),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop_group() reaches all
                preexec_fn=end_with_this_process(),
            )
    finally:
        listener.close()  # the child has its own copy
    return process, port


def stop_group(process: subprocess.Popen | None, timeout: float = 10) -> None:
    """Stop a child's process group: SIGTERM, then SIGKILL if it lingers."""
    if process is None or process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout)
