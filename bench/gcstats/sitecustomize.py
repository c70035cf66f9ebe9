"""Garbage-collector pauses of every process of a benchmark, for finding latency tails.

Put this directory first on ``PYTHONPATH`` for a benchmark run (the benchmarks pass their
environment on to the servers, load generators and publishers they start):

    PYTHONPATH=bench/gcstats python -m bench.sse ...

Every Python process then times each collection (``gc.callbacks``) and, every 5 seconds,
writes ``$GCSTATS_DIR/gc-<pid>.json`` (default ``/tmp/gcstats``): per generation the
collections, their total and longest time, and every pause of 20 ms or more with its wall
time, and the unreachable objects each generation's collections freed (cycles: what
refcounting alone would have leaked), so it can be set against the benchmark's timeline.
This is how the notification p99's 240-345 ms full collections were found
(streamsite/gc_policy.py). With ``GCSTATS_TYPES=1`` it also counts the tracked objects by
type every 5 seconds; with ``GCSTATS_YOUNG_TYPES=1``, what a middle collection traverses.
"""

import gc
import json
import os
import sys
import tempfile
import threading
import time

_DIR = os.environ.get("GCSTATS_DIR") or os.path.join(tempfile.gettempdir(), "gcstats")
_LONG_SECONDS = 0.02
_started = [0.0]
#: Per generation: collections, seconds in all, the longest, unreachable objects freed.
_by_generation = {0: [0, 0.0, 0.0, 0], 1: [0, 0.0, 0.0, 0], 2: [0, 0.0, 0.0, 0]}
_long_pauses: list[tuple[float, int, float]] = []


def _timed(phase: str, info: dict) -> None:
    if phase == "start":
        if _YOUNG_TYPES and info["generation"] == 1:
            _count_young_types()
        _started[0] = time.perf_counter()
        return
    seconds = time.perf_counter() - _started[0]
    tally = _by_generation[info["generation"]]
    tally[0] += 1
    tally[1] += seconds
    tally[2] = max(tally[2], seconds)
    tally[3] += info["collected"]
    if seconds >= _LONG_SECONDS:
        _long_pauses.append((round(time.time(), 1), info["generation"], round(seconds * 1e3, 1)))


#: ``GCSTATS_TYPES=1``: also count the objects the collector tracks, by type, every 5 s
#: (the largest ``_TOP_TYPES``, into ``types``, with the time): what a full collection
#: traverses. Counting walks every object (a fraction of a second with millions), so it
#: is for runs that look for what the objects are, not for timing runs.
_TYPES = os.environ.get("GCSTATS_TYPES") == "1"
_TOP_TYPES = 25
_types: list[dict] = []


def _count_types() -> None:
    counts: dict[str, int] = {}
    for obj in gc.get_objects():
        name = type(obj).__qualname__
        counts[name] = counts.get(name, 0) + 1
    top = sorted(counts.items(), key=lambda item: -item[1])[:_TOP_TYPES]
    _types.append({"t": round(time.time(), 1), "tracked": sum(counts.values()), "top": top})


#: ``GCSTATS_YOUNG_TYPES=1``: before a middle-generation collection (at most one every
#: 5 s), count by type what it is about to traverse (the young and middle generations,
#: into ``young_types``): what survives the young collections, and so what makes the
#: middle ones long. Counting is done inside the pause, so not for timing runs either.
_YOUNG_TYPES = os.environ.get("GCSTATS_YOUNG_TYPES") == "1"
_young_types: list[dict] = []


def _count_young_types() -> None:
    now = time.time()
    if _young_types and now - _young_types[-1]["t"] < 5:
        return
    counts: dict[str, int] = {}
    for generation in (0, 1):
        for obj in gc.get_objects(generation=generation):
            name = type(obj).__qualname__
            counts[name] = counts.get(name, 0) + 1
    top = sorted(counts.items(), key=lambda item: -item[1])[:_TOP_TYPES]
    _young_types.append({"t": round(now, 1), "young": sum(counts.values()), "top": top})


def _write_forever() -> None:
    os.makedirs(_DIR, exist_ok=True)
    path = os.path.join(_DIR, f"gc-{os.getpid()}.json")
    while True:
        time.sleep(5)
        report = {
            "argv": sys.argv[:3],
            "generations": {
                str(generation): {
                    "collections": n,
                    "seconds": round(total, 3),
                    "max_ms": round(top * 1e3, 1),
                    "unreachable_freed": freed,
                }
                for generation, (n, total, top, freed) in _by_generation.items()
            },
            "threshold": gc.get_threshold(),
            "frozen": gc.get_freeze_count(),
            "pauses_over_20ms": _long_pauses,
        }
        if _TYPES:
            _count_types()
            report["types"] = _types
        if _YOUNG_TYPES:
            report["young_types"] = _young_types
        with open(path + ".tmp", "w") as out:
            json.dump(report, out)
        os.replace(path + ".tmp", path)


gc.callbacks.append(_timed)
threading.Thread(target=_write_forever, name="gcstats", daemon=True).start()
