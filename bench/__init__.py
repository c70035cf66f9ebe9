"""Benchmarks that start the real server on PostgreSQL + Redis and print figures.

``python -m bench.sse`` (``make bench``) measures streamsite's notification stream against
a hand-written baseline; docs/benchmarks.md says what each figure means.
"""
