"""Observability: metrics, health checks, structured logs."""
