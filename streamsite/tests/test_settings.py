"""Start-up with a bad environment stops with one line naming the variable."""

import os
import subprocess
import sys

import pytest
from django.conf import settings


def run_check(**env: str) -> subprocess.CompletedProcess:
    """Run ``manage.py check`` in a fresh process with ``env`` on top of a clean environment."""
    base = {
        k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_", "REDIS_"))
    }
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=settings.BASE_DIR,
        env=base | env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"DATABASE_URL": "postgres://u@h:notaport/db"}, "DATABASE_URL"),
        ({"DATABASE_URL": "mysql://u@h/db"}, "DATABASE_URL"),
        ({"REDIS_URL": "redis://h:6379/zero"}, "REDIS_URL"),
        ({"DJANGO_DEBUG": "perhaps"}, "DJANGO_DEBUG"),
        ({"DJANGO_DEBUG": "0"}, "DJANGO_SECRET_KEY"),
        ({"DJANGO_CSRF_TRUSTED_ORIGINS": "example.com"}, "DJANGO_CSRF_TRUSTED_ORIGINS"),
    ],
)
def test_bad_environment_stops_startup_with_one_line(env, variable):
    result = run_check(**env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("streamsite: configuration error: ")
    assert variable in lines[0]
    assert "Traceback" not in result.stderr


def test_production_environment_starts():
    result = run_check(DJANGO_DEBUG="0", DJANGO_SECRET_KEY="x" * 50)
    assert result.returncode == 0, result.stderr


def test_defaults_are_the_embedded_setup():
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django, os; os.environ['DJANGO_SETTINGS_MODULE']='streamsite.settings'; "
            "django.setup(); from django.conf import settings as s; "
            "print(s.DEBUG, s.DATABASES['default']['ENGINE'], "
            "s.CHANNEL_LAYERS['default']['BACKEND'], s.ALLOWED_HOSTS)",
        ],
        cwd=settings.BASE_DIR,
        env={
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("DJANGO_", "DATABASE_", "REDIS_"))
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split(" ", 3) == [
        "True",
        "django.db.backends.sqlite3",
        "channels.layers.InMemoryChannelLayer",
        "['localhost', '127.0.0.1', '[::1]']\n",
    ]


def test_database_connection_is_configured_for_its_backend(db):
    """SQLite: WAL and a busy timeout. PostgreSQL: psycopg's pool, no persistent connections."""
    from django.db import connection

    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA journal_mode")
            assert cursor.fetchone()[0] == "wal"
        assert connection.settings_dict["OPTIONS"]["timeout"] == 20
    else:
        assert connection.vendor == "postgresql"
        assert connection.settings_dict["OPTIONS"]["pool"]["max_size"] >= 1
        assert connection.settings_dict["CONN_MAX_AGE"] == 0


def test_atomic_requests_stays_off():
    assert not settings.DATABASES["default"].get("ATOMIC_REQUESTS", False)
