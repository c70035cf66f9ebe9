"""Make a server's worker processes end with the supervisor that started them.

``manage.py serve --workers N`` is uvicorn's supervisor with N worker processes. When the
supervisor is SIGKILLed (the OOM killer, ``kill -9``, a crashed container runtime), it can
stop nothing, and its workers used to live on, holding the port: the restart then failed
with "address in use". On Linux each worker asks the kernel to send it SIGTERM when its
parent dies (``PR_SET_PDEATHSIG``), so it shuts down gracefully (ending its streams, see
``streamsite.lifespan``) and frees the port. Elsewhere this does nothing.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import sys

logger = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
#: libc's ``prctl``, looked up once at import: between fork and exec (a ``preexec_fn``) a
#: library lookup is not safe (``find_library`` may even run programs), a call is.
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None


def signal_when_parent_dies(parent_pid: int, signum: int = signal.SIGTERM) -> int:
    """Ask the kernel for ``signum`` when this process' parent dies (Linux only).

    Returns 0, or the errno of a refusal. Safe between fork and exec (no logging, no
    locks), so the test rig's children use it too (``streamsite.testing.child_process``).
    The kernel sends it when the *thread* that forked this process ends, so fork from a
    thread that lives as long as the child should. If the parent (``parent_pid``) is
    already gone, the signal is sent now: none would ever come.
    """
    if _prctl is None:
        return 0
    if _prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0) != 0:
        return ctypes.get_errno()
    if os.getppid() != parent_pid:
        os.kill(os.getpid(), signum)
    return 0


def end_with_parent() -> bool:
    """In a worker spawned by a supervisor, get SIGTERM when the supervisor dies.

    Returns whether it was arranged. A process that is not a ``multiprocessing`` child
    (``serve --workers 1``, daphne, a test) is left alone: its parent is a shell or a
    service manager, whose exit must not stop it.
    """
    parent = multiprocessing.parent_process()
    if parent is None or not sys.platform.startswith("linux"):
        return False
    if errno := signal_when_parent_dies(parent.pid):
        logger.warning("could not ask to end with the supervisor: errno %d", errno)
        return False
    return True
