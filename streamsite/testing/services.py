"""Know whether the real services the suite needs are here, and fail or skip accordingly.

With ``REQUIRE_SERVICES=1`` (CI) a missing PostgreSQL, Redis or Chromium is an error,
never a skip: a green run then proves the suite ran against all three.
"""

import os
import socket
from pathlib import Path
from urllib.parse import urlsplit

import pytest

CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))


def services_required() -> bool:
    """Whether a missing service must fail the run (``REQUIRE_SERVICES=1``)."""
    return os.environ.get("REQUIRE_SERVICES", "").strip() in ("1", "true", "yes")


def missing_services() -> list[str]:
    """Describe each real service the run should have and does not."""
    missing = []
    database_url = os.environ.get("DATABASE_URL", "")
    if not database_url.startswith(("postgres://", "postgresql://")):
        missing.append("PostgreSQL: DATABASE_URL is not a postgres:// URL")
    elif not _reachable(database_url, 5432):
        missing.append(f"PostgreSQL: nothing answers at {urlsplit(database_url).netloc}")
    redis_url = os.environ.get("REDIS_URL", "")
    if not redis_url.startswith(("redis://", "rediss://")):
        missing.append("Redis: REDIS_URL is not a redis:// URL")
    elif not _reachable(redis_url, 6379):
        missing.append(f"Redis: nothing answers at {urlsplit(redis_url).netloc}")
    if not CHROMIUM.exists():
        missing.append(f"Chromium: {CHROMIUM} is missing (apt-get install -y chromium)")
    return missing


def skip_or_fail(reason: str) -> None:
    """Skip the test, or fail it under REQUIRE_SERVICES=1."""
    if services_required():
        pytest.fail(f"{reason} (REQUIRE_SERVICES=1: a missing service is an error)")
    pytest.skip(reason)  # only without REQUIRE_SERVICES


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port or default_port), timeout=3):
            return True
    except OSError:
        return False


def database_connection_count() -> int:
    """How many connections PostgreSQL has open to the current (test) database."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
        return cursor.fetchone()[0]
