"""Observability: the Prometheus metrics every part of streamsite reports to (``metrics``),
health checks (``health``), structured logs (``logs``), and the admin's live dashboard that
shows the metrics (``live``, ``aggregate``, ``dashboard``)."""
