"""Several server workers, one set of figures: the multi-process files' housekeeping.

``manage.py serve`` sets ``PROMETHEUS_MULTIPROC_DIR`` (a fresh directory per run) before
uvicorn starts its workers; each worker's metrics live in files named after its pid.
No Django imports here: ``streamsite.lifespan`` imports this before apps are ready.
"""

import os

from prometheus_client import multiprocess

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def forget_dead_workers(directory: str) -> None:
    """Drop the live gauges of workers that are gone (a crash skips ``worker_ended``).

    Their counters and histograms stay: what a dead worker counted did happen.
    """
    pids = set()
    for name in os.listdir(directory):
        if name.startswith("gauge_live") and name.endswith(".db"):
            pid = name.rsplit("_", 1)[-1][: -len(".db")]
            if pid.isdigit():
                pids.add(int(pid))
    for pid in pids:
        if not _alive(pid):
            multiprocess.mark_process_dead(pid, directory)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def worker_ended() -> None:
    """At a worker's shutdown: its live gauges (open streams...) stop counting."""
    directory = os.environ.get(MULTIPROC_ENV)
    if directory:
        multiprocess.mark_process_dead(os.getpid(), directory)
