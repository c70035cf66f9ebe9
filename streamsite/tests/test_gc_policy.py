"""The garbage collector's settings in a server process (each case in a fresh interpreter:
freezing the test process would keep its garbage forever)."""

import json
import subprocess
import sys

PROBE = """
import gc, json, sys, weakref
from streamsite.gc_policy import garbage_collector_tune
class Node: pass
kept = [[] for _ in range(1000)]  # the "application": alive, tracked
garbage = Node(); garbage.self = garbage; freed = weakref.ref(garbage); del garbage
garbage_collector_tune(int(sys.argv[1]))
print(json.dumps({"threshold": gc.get_threshold(), "frozen": gc.get_freeze_count(),
                  "startup_garbage_freed": freed() is None}))
"""


def probe(young_threshold: int) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(young_threshold)],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return json.loads(result.stdout)


def test_a_server_freezes_what_it_loaded_and_collects_the_young_less_often():
    tuned = probe(20_000)
    assert tuned["threshold"] == [20_000, 10, 10]
    assert tuned["frozen"] >= 1000  # the application's objects, out of every collection
    assert tuned["startup_garbage_freed"]  # collected first, not frozen for ever


def test_zero_keeps_pythons_defaults():
    untouched = probe(0)
    assert untouched["threshold"] == [700, 10, 10]
    assert untouched["frozen"] == 0
