"""Observability: the Prometheus metrics every part of streamsite reports to."""
