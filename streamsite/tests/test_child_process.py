"""Servers the test rig starts end with the test process, however it dies."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from streamsite.testing.child_process import stop_group

#: A stand-in for pytest: starts a server-like child the way the rig does, prints its pid,
#: then waits to be killed.
RIG = """
import sys, time
from pathlib import Path
from streamsite.testing.child_process import start_on_socket
process, port = start_on_socket(
    lambda fd: [sys.executable, "-c", "import time; time.sleep(120)"],
    cwd=Path.cwd(), env={}, log_path=Path(sys.argv[1]),
)
print(process.pid, flush=True)
time.sleep(120)
"""


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its reaper has ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_killed_pytest_leaves_no_orphan_server(tmp_path):
    """Issue #13: a SIGKILLed pytest left its live servers running, holding their ports."""
    env = {**os.environ, "PYTHONPATH": str(Path.cwd())}
    rig = subprocess.Popen(
        [sys.executable, "-c", RIG, str(tmp_path / "child.log")],
        stdout=subprocess.PIPE,
        env=env,
        start_new_session=True,
    )
    try:
        grandchild = int(rig.stdout.readline())
        assert alive(grandchild)
        os.kill(rig.pid, signal.SIGKILL)
        rig.wait(10)
        deadline = time.monotonic() + 10
        while alive(grandchild) and time.monotonic() < deadline:
            time.sleep(0.02)  # polling a pid with a deadline: the kernel's signal is async
        assert not alive(grandchild), "the server outlived the test process that started it"
    finally:
        stop_group(rig)
        rig.stdout.close()
        if "grandchild" in locals() and alive(grandchild):
            os.kill(grandchild, signal.SIGKILL)
