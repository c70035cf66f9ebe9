"""Observability: the Prometheus metrics every part of streamsite reports to (``metrics``),
and the admin's live dashboard that shows them (``live``, ``aggregate``, ``dashboard``)."""
