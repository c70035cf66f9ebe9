"""Where a server's memory per connection goes, by source line (tracemalloc).

Put this directory first on ``PYTHONPATH`` for a benchmark run; the uvicorn server it
starts then traces its allocations from start-up. Six seconds in, it takes a first
snapshot; when the file ``$MEMTRACE_GO`` (default ``<tmp>/memtrace/go``) appears (create
it once the benchmark holds its connections), it takes a second, and writes
``<tmp>/memtrace/mem-<pid>.txt``: the growth per open file descriptor (about one per
connection), by the line that allocated it, largest first. Tracing slows the server
several times over: use it for where memory goes, never for speed. This is how the
connection wrapper each stream kept (streamsite/streaming/db.py, ``_gauge_pool``) was
found. Example:

    PYTHONPATH=bench/memtrace python -m bench.sse --scenarios fanout --fanout-n 1000 \\
        --rates 1:120 --max-publish-seconds 120 --history-unread 0 --no-docs ...
    # once it prints "hold": touch /tmp/memtrace/go
"""

import os
import sys
import tempfile
import threading
import time
import tracemalloc

_DIR = os.path.join(tempfile.gettempdir(), "memtrace")
_GO = os.environ.get("MEMTRACE_GO") or os.path.join(_DIR, "go")

tracemalloc.start(1)


def _compare_when_told() -> None:
    time.sleep(6)  # sys.argv is not set yet while site imports this module
    if "uvicorn" not in sys.argv[0]:
        tracemalloc.stop()
        return
    first = tracemalloc.take_snapshot()
    fds_before = len(os.listdir("/proc/self/fd"))
    while not os.path.exists(_GO):
        time.sleep(0.5)
    connections = max(1, len(os.listdir("/proc/self/fd")) - fds_before)
    stats = tracemalloc.take_snapshot().compare_to(first, "lineno")
    total = sum(stat.size_diff for stat in stats)
    os.makedirs(_DIR, exist_ok=True)
    with open(os.path.join(_DIR, f"mem-{os.getpid()}.txt"), "w") as out:
        out.write(f"~{connections} connections: {total / 1024 / connections:.2f} KB each\n")
        for stat in stats[:80]:
            frame = stat.traceback[0]
            out.write(
                f"{stat.size_diff / 1024 / connections:8.3f} KB "
                f"{stat.count_diff / connections:7.2f} objects  {frame.filename}:{frame.lineno}\n"
            )


threading.Thread(target=_compare_when_told, name="memtrace", daemon=True).start()
