"""How a server process runs Python's cyclic garbage collector.

With CPython's defaults (a collection every 700 net allocations, a full one whenever the
objects promoted since the last full one reach a quarter of the old generation), a server
fanning events out to a thousand streams stopped the world for 240-345 ms every 4.4 s
(``bench/results/20261202T-gc/``; docs/benchmarks.md, "garbage collection was the p99"):

- the events of one publish wait in a thousand streams' buffers for the tens of
  milliseconds the fan-out takes, long enough to survive two young collections, so they
  were promoted to the old generation by the thousand, where only a full collection
  frees them: one every few seconds;
- a full collection traverses everything the process holds, and most of it is what it
  imported at startup (Django, the models, the URL patterns: 120,000-220,000 objects) and
  never frees.

Every delivery in flight during such a pause waits for it: that was the notifications'
p99. So, once the application is loaded:

- ``gc.freeze()`` moves what exists (after a full collection) to the permanent generation,
  which no collection traverses again (CPython's documentation suggests it "to speed up
  collection"; it is what methane proposed it for, a web worker after loading its app);
- the young generation's threshold goes from 700 to ``GC_YOUNG_THRESHOLD`` allocations:
  an event lives through at most one young collection before it is freed by its refcount,
  instead of two, so almost nothing short-lived reaches the old generation. A young
  collection then traverses more objects (about 20 ms at 50,000 here) but far more
  rarely; the figure is a trade between that pause and the promotions.

Nothing here changes what is freed: objects without cycles are freed by refcount as
before, cycles by the next collection of their generation.
"""

import gc

#: CPython's default thresholds (3.11): young, middle, old.
PYTHON_DEFAULTS = (700, 10, 10)


def garbage_collector_tune(young_threshold: int) -> None:
    """Freeze what the process has loaded and raise the young generation's threshold.

    ``young_threshold`` 0 keeps CPython's defaults (no freeze): the benchmarks' way to
    measure what this changes. Call it once the application is imported, before serving.
    """
    if young_threshold <= 0:
        return
    gc.collect()  # garbage of the startup must not be frozen with it
    gc.freeze()
    gc.set_threshold(young_threshold, PYTHON_DEFAULTS[1], PYTHON_DEFAULTS[2])
