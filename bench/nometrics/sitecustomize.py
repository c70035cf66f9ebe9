"""The benchmarks' metrics-off twin of streamsite: every metric update made a no-op.

Issue #11 allows metrics to make the delivery path at most 5 % slower. To measure that,
``bench.chat --configs streamsite,streamsite-nometrics`` runs the same ``manage.py serve``
twice; the second with this directory first on ``PYTHONPATH``, so Python imports this
module (``sitecustomize``) at start-up in the supervisor and in every uvicorn worker,
before any of streamsite. The served code is the same byte for byte: only what a metric
does when it is updated is gone (prometheus_client's ``inc``/``dec``/``set``/``observe``
and ``labels``, and streamsite's ``Tally.add``), so the difference between the twins is
the cost of the metrics on the hot paths, and nothing else.
"""

import importlib.abc
import sys

from prometheus_client import metrics


def _nothing(self, *args, **kwargs):
    return None


def _itself(self, *args, **kwargs):
    return self


for _cls, _names in (
    (metrics.Counter, ("inc",)),
    (metrics.Gauge, ("inc", "dec", "set")),
    (metrics.Histogram, ("observe",)),
):
    for _name in _names:
        setattr(_cls, _name, _nothing)
    _cls.labels = _itself


class _QuietTally(importlib.abc.MetaPathFinder):
    """Once ``streamsite.observability.metrics`` is imported, its ``Tally.add`` does
    nothing either (a dict increment per delivery, flushed to a counter each second)."""

    TARGET = "streamsite.observability.metrics"

    def find_spec(self, fullname, path, target=None):
        if fullname != self.TARGET:
            return None
        sys.meta_path.remove(self)
        import importlib.util

        spec = importlib.util.find_spec(fullname)
        loader = spec.loader
        original = loader.exec_module

        def exec_module(module):
            original(module)
            module.Tally.add = _nothing

        loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, _QuietTally())
