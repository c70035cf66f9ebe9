"""Read streamsite's configuration from the environment.

Each helper turns one environment variable into a setting and raises ``ConfigError`` with a
message that names the variable when its value is unusable. ``settings.py`` catches that
error and stops start-up with that one line, instead of a traceback from deep inside a
database or Redis driver at the first request.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import unquote, urlsplit

import dj_database_url

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off", ""})


class ConfigError(Exception):
    """An environment variable has a value streamsite cannot use."""


def env_bool(name: str, default: bool, environ: Mapping[str, str] = os.environ) -> bool:
    """Return the boolean in ``name`` (1/0, true/false, yes/no, on/off)."""
    raw = environ.get(name)
    if raw is None:
        return default
    word = raw.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ConfigError(
        f"{name}={raw!r} is not a boolean: use 1 or 0 (or true/false, yes/no, on/off)"
    )


def env_int(
    name: str, default: int, *, minimum: int = 0, environ: Mapping[str, str] = os.environ
) -> int:
    """Return the integer in ``name``, which must be at least ``minimum``."""
    raw = environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None
    if value < minimum:
        raise ConfigError(f"{name}={raw!r} must be at least {minimum}")
    return value


def env_list(name: str, default: list[str], environ: Mapping[str, str] = os.environ) -> list[str]:
    """Return the comma-separated list in ``name``, blanks dropped."""
    raw = environ.get(name)
    if raw is None:
        return list(default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def csrf_trusted_origins(name: str, environ: Mapping[str, str] = os.environ) -> list[str]:
    """Return the origins in ``name``; each must carry its scheme, as Django requires."""
    origins = env_list(name, [], environ)
    for origin in origins:
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(
                f"{name}: {origin!r} is not an origin: write it with its scheme, "
                "like https://example.com"
            )
    return origins


def env_http_url(name: str, environ: Mapping[str, str] = os.environ) -> str:
    """Return the http(s) base URL in ``name`` without its trailing slash, or "" if unset."""
    raw = environ.get(name, "").strip()
    if not raw:
        return ""
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(
            f"{name}={raw!r} is not an http(s) URL: write it like http://127.0.0.1:11434/v1"
        )
    return raw.rstrip("/")


def secret_key(debug: bool, environ: Mapping[str, str] = os.environ) -> str:
    """Return ``DJANGO_SECRET_KEY``; only a development server may run without one."""
    key = environ.get("DJANGO_SECRET_KEY", "").strip()
    if key:
        return key
    if debug:
        return "django-insecure-development-only-never-use-in-production"
    raise ConfigError(
        "DJANGO_SECRET_KEY is required when DJANGO_DEBUG is off: set it to a long random "
        'string, e.g. python -c "import secrets; print(secrets.token_urlsafe(50))"'
    )


def sqlite_database(path: Path) -> dict:
    """Return the embedded default database: SQLite in WAL mode with a busy timeout.

    WAL lets the server read while a command (``notify``, ``seed_demo``) writes, and
    ``IMMEDIATE`` transactions take the write lock up front, so two writers wait their turn
    (up to ``timeout`` seconds) instead of failing with "database is locked".
    """
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(path),
        "OPTIONS": {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
        },
        "TEST": {"NAME": str(path.with_name(f"test_{path.name}"))},
    }


def database_from_url(url: str, *, pool_max_size: int = 10, name: str = "DATABASE_URL") -> dict:
    """Return Django's DATABASES entry for a ``postgres://`` or ``sqlite:///`` URL.

    PostgreSQL uses psycopg 3's connection pool: a request or stream borrows a connection
    for each query burst and gives it back, so idle streams hold none.
    """
    parts = urlsplit(url)
    if parts.scheme in ("sqlite", "sqlite3"):
        # As dj-database-url reads them: sqlite:///relative.sqlite3, sqlite:////absolute.
        path = unquote(parts.path)[1:]
        if not path:
            raise ConfigError(f"{name}: a SQLite URL needs a file, like sqlite:////abs/db.sqlite3")
        return sqlite_database(Path(path))
    if parts.scheme not in ("postgres", "postgresql", "pgsql"):
        raise ConfigError(
            f"{name}: unsupported scheme {parts.scheme!r}: use postgres://user@host:5432/dbname"
        )
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise ConfigError(f"{name}: the port in {_redact(url)!r} is not a number") from None
    if not parts.hostname:
        raise ConfigError(
            f"{name}: no host in {_redact(url)!r}: use postgres://user@host:5432/dbname"
        )
    if not parts.path.strip("/"):
        raise ConfigError(f"{name}: no database name in {_redact(url)!r}")
    config = dj_database_url.parse(url, conn_max_age=0)
    config["OPTIONS"] = {
        **config.get("OPTIONS", {}),
        "pool": {"min_size": 1, "max_size": pool_max_size, "timeout": 10},
    }
    return config


def channel_layer_from_url(url: str | None, *, name: str = "REDIS_URL") -> dict:
    """Return ``CHANNEL_LAYERS['default']``: Redis when a URL is given, else in memory.

    redis-py 8 gives every connection a 5 s socket timeout, the same length as
    channels-redis' blocking read, so idle receivers die with TimeoutError: the timeout is
    switched off. It also caps a pool at 100 connections, fewer than the receivers of a busy
    process, so the cap is raised.
    """
    if not url:
        return {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": 1000}}
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(f"{name}: unsupported scheme {parts.scheme!r}: use redis://host:6379/0")
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise ConfigError(f"{name}: the port in {_redact(url)!r} is not a number") from None
    if parts.scheme != "unix" and not parts.hostname:
        raise ConfigError(f"{name}: no host in {_redact(url)!r}: use redis://host:6379/0")
    db = parts.path.strip("/")
    if parts.scheme != "unix" and db and not db.isdigit():
        raise ConfigError(f"{name}: the database in {_redact(url)!r} must be a number, like /0")
    return {
        "BACKEND": "streamsite.streaming.layer.RedisChannelLayer",
        "CONFIG": {
            "hosts": [{"address": url, "socket_timeout": None, "max_connections": 4096}],
            "capacity": 1000,
            "expiry": 60,
        },
    }


def _redact(url: str) -> str:
    """Return ``url`` without its password, fit for an error message."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()
