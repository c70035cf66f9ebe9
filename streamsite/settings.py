"""Settings for streamsite, read once from the environment.

Nothing set gives the embedded default that ``make run`` uses on a bare machine: DEBUG on,
SQLite and the in-memory channel layer. ``DATABASE_URL`` and ``REDIS_URL`` switch to
PostgreSQL and Redis, the multi-process setup. README lists every variable.
"""

import os
import sys
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from streamsite.env import (
    ConfigError,
    channel_layer_from_url,
    csrf_trusted_origins,
    database_from_url,
    env_bool,
    env_http_url,
    env_int,
    env_list,
    secret_key,
    sqlite_database,
)
from streamsite.observability.logs import logging_config

BASE_DIR = Path(__file__).resolve().parent.parent

try:
    DEBUG = env_bool("DJANGO_DEBUG", True)
    SECRET_KEY = secret_key(DEBUG)
    ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
    CSRF_TRUSTED_ORIGINS = csrf_trusted_origins("DJANGO_CSRF_TRUSTED_ORIGINS")
    _https = env_bool("DJANGO_HTTPS", False)
    _database_url = os.environ.get("DATABASE_URL", "").strip()
    DATABASES = {
        "default": database_from_url(
            _database_url, pool_max_size=env_int("DATABASE_POOL_MAX_SIZE", 10, minimum=1)
        )
        if _database_url
        else sqlite_database(BASE_DIR / "db.sqlite3")
    }
    CHANNEL_LAYERS = {"default": channel_layer_from_url(os.environ.get("REDIS_URL", "").strip())}
    # Server-Sent Events: a comment every SSE_KEEPALIVE_SECONDS keeps idle streams (and
    # the proxies between) alive and finds dead clients.
    SSE_KEEPALIVE_SECONDS = env_int("SSE_KEEPALIVE_SECONDS", 15, minimum=1)
    # How long a browser waits before reconnecting a dropped stream (the ``retry`` field).
    SSE_RETRY_MILLISECONDS = env_int("SSE_RETRY_MILLISECONDS", 2000, minimum=100)
    # Events buffered per stream for a slow client; past that the stream ends and the
    # client resumes from the database, so a stalled reader costs bounded memory.
    SSE_BUFFER_EVENTS = env_int("SSE_BUFFER_EVENTS", 1000, minimum=1)
    # `/metrics` for a scraper: `Authorization: Bearer <token>`. Empty: only staff sessions.
    METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "").strip()
    # channels-redis forgets group members after ``group_expiry`` (a day): each process'
    # hub joins its groups again this often.
    STREAM_GROUP_RENEW_SECONDS = env_int("STREAM_GROUP_RENEW_SECONDS", 6 * 3600, minimum=1)
    # Each hub sends itself a heartbeat through the channel layer this often; when three go
    # missing (Redis restarted and lost the groups) it re-joins and its streams resync.
    STREAM_HUB_HEARTBEAT_SECONDS = env_int("STREAM_HUB_HEARTBEAT_SECONDS", 5, minimum=1)
    # Allocations between two young garbage collections in a server process (CPython's
    # default is 700; 0 keeps CPython's defaults): streamsite/gc_policy.py.
    GC_YOUNG_THRESHOLD = env_int("GC_YOUNG_THRESHOLD", 20_000, minimum=0)
    # Longest chat message, in characters after trimming (longer ones are refused: too_long).
    CHAT_MAX_MESSAGE_LENGTH = env_int("CHAT_MAX_MESSAGE_LENGTH", 4000, minimum=1)
    # Messages one user may send per window, across all their sockets and processes;
    # over it a send gets ``rate_limited`` and nothing is stored.
    CHAT_RATE_LIMIT_MESSAGES = env_int("CHAT_RATE_LIMIT_MESSAGES", 20, minimum=1)
    CHAT_RATE_LIMIT_SECONDS = env_int("CHAT_RATE_LIMIT_SECONDS", 10, minimum=1)
    # A process refreshes its users' presence every third of this; the users of a process
    # that crashed (``disconnect`` never ran) drop out of presence after at most this long.
    CHAT_PRESENCE_TTL_SECONDS = env_int("CHAT_PRESENCE_TTL_SECONDS", 30, minimum=3)
    # Shared state that must hold across processes (rate limits, presence) lives in this
    # Redis when it is set, in the process otherwise (the embedded, single-process default).
    REDIS_URL = os.environ.get("REDIS_URL", "").strip()
    # The assistant's upstream: any OpenAI-compatible chat-completions API (OpenAI, vLLM,
    # Ollama, llama.cpp's server, LiteLLM), from its /v1 base URL. Unset: the offline docs
    # assistant answers from docs/ and README.md, so `make run` needs no network.
    LLM_BASE_URL = env_http_url("LLM_BASE_URL")
    LLM_API_KEY = os.environ.get("LLM_API_KEY", "").strip()
    LLM_MODEL = os.environ.get("LLM_MODEL", "").strip() or "gpt-4o-mini"
    # Connect, first-token and between-chunk (stall) timeout of upstream calls.
    LLM_TIMEOUT_SECONDS = env_int("LLM_TIMEOUT_SECONDS", 30, minimum=1)
    LLM_MAX_TOKENS = env_int("LLM_MAX_TOKENS", 1024, minimum=1)
    # Pace of the offline docs assistant, so the whole streaming path is exercised.
    LLM_OFFLINE_TOKENS_PER_SECOND = env_int("LLM_OFFLINE_TOKENS_PER_SECOND", 30, minimum=1)
    # Answers one user may have running at once (over it: 409 with the running one's URL).
    ASSISTANT_MAX_CONCURRENT = env_int("ASSISTANT_MAX_CONCURRENT", 2, minimum=1)
    # Tokens (prompt and answer, as reported or estimated) one user may spend per UTC day.
    ASSISTANT_DAILY_TOKENS = env_int("ASSISTANT_DAILY_TOKENS", 200_000, minimum=1)
    # Longest question, in characters after trimming.
    ASSISTANT_MAX_PROMPT_LENGTH = env_int("ASSISTANT_MAX_PROMPT_LENGTH", 8000, minimum=1)
    # An answer whose process stopped renewing its liveness mark this long ago (a crash,
    # kill -9) is marked interrupted by whichever process notices first.
    ASSISTANT_INTERRUPTED_AFTER_SECONDS = env_int(
        "ASSISTANT_INTERRUPTED_AFTER_SECONDS", 15, minimum=3
    )
    # Text received from the upstream is stored and published at most this often.
    ASSISTANT_FLUSH_MILLISECONDS = env_int("ASSISTANT_FLUSH_MILLISECONDS", 50, minimum=1)
    # Where uploaded and generated files go (Django's default storage): job results.
    MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", "").strip() or BASE_DIR / "media")
    # A job writes (and publishes) its progress at most this often: 4 events a second.
    JOB_PROGRESS_SECONDS = env_int("JOB_PROGRESS_MILLISECONDS", 250, minimum=10) / 1000
    # Rows an export writes between two progress counts.
    JOB_EXPORT_CHUNK_ROWS = env_int("JOB_EXPORT_CHUNK_ROWS", 500, minimum=1)
    # A running job whose worker stopped renewing it this long ago (kill -9, a lost
    # machine) is marked failed and its owner told. Workers renew every third of it.
    JOB_STALE_SECONDS = env_int("JOB_STALE_SECONDS", 60, minimum=3)
    # A finished job's file is kept this long, then deleted with it.
    JOB_RESULT_TTL_HOURS = env_int("JOB_RESULT_TTL_HOURS", 24, minimum=1)
except ConfigError as error:
    # One line naming the variable, not a traceback: this is the operator's mistake.
    sys.stderr.write(f"streamsite: configuration error: {error}\n")
    raise SystemExit(2) from None

INSTALLED_APPS = [
    # servestatic first: its runserver is the next app's (daphne's, which serves HTTP, SSE
    # and WebSockets from one process) without Django's static-files handler, so static
    # files are served by ServeStaticMiddleware as under `serve` (that handler answered
    # `/static/../x` with a 500 SuspiciousFileOperation instead of a 404).
    "servestatic",
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "streamsite",
    "notifications",
    "chat",
    "assistant",
    # Before django_tasks_db: its `db_worker` command is jobs' (a shutdown that loses no
    # job, jobs/management/commands/db_worker.py).
    "jobs",
    "django_tasks",
    "django_tasks_db",
]

# Django's task framework (the django-tasks backport until Django 6): jobs are queued in
# the database and run by `manage.py db_worker` processes (README: "Workers").
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default"]}}

# Django's stock middleware, adapted to run on the event loop (streamsite/middleware.py):
# no thread hop per hook, and no executor thread kept alive by every open stream.
MIDDLEWARE = [
    # Counts every response by url name, method and status (streamsite.observability).
    "streamsite.observability.requests.RequestMetricsMiddleware",
    # A plain 400 for parameters past DATA_UPLOAD_MAX_NUMBER_FIELDS (DEBUG's error page made
    # it a 500, and Django logs a traceback).
    "streamsite.middleware.RequestLimitsInlineMiddleware",
    "streamsite.middleware.SecurityInlineMiddleware",
    # ServeStatic, answering 404 (not 500) for a static URL that names no file.
    "streamsite.middleware.StaticFilesMiddleware",
    "streamsite.middleware.SessionInlineMiddleware",
    "streamsite.middleware.CommonInlineMiddleware",
    "streamsite.middleware.CsrfViewInlineMiddleware",
    "streamsite.middleware.AuthenticationInlineMiddleware",
    "streamsite.middleware.MessageInlineMiddleware",
    "streamsite.middleware.XFrameOptionsInlineMiddleware",
]

ROOT_URLCONF = "streamsite.urls"
ASGI_APPLICATION = "streamsite.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "notifications.context_processors.bell",
                "streamsite.context_processors.navigation",
            ],
        },
    },
]

# Never ATOMIC_REQUESTS: Django refuses it for async views, and streams are async views.
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "home"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Hashed, compressed names need `collectstatic`, which `make serve` runs; development
    # serves the files as they are.
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "streamsite.storage.ManifestStaticFilesStorage"
    },
}

# Decided from the environment's DEBUG, not the test runner's (which turns DEBUG off): in
# development ServeStatic serves straight from the app and project static directories.
SERVESTATIC_USE_FINDERS = DEBUG

# Behind a TLS-terminating proxy: secure cookies and trust its X-Forwarded-Proto.
SESSION_COOKIE_SECURE = _https
CSRF_COOKIE_SECURE = _https
if _https:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# Django configures its own loggers; these add streamsite's (INFO, on stderr).
# LOG_FORMAT=json: one JSON object per line (time, level, logger, message, request_id,
# user_id, extra fields); the default "text" is the readable "LEVEL logger: message".
LOG_FORMAT = os.environ.get("LOG_FORMAT", "text").strip().lower() or "text"
if LOG_FORMAT not in ("text", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be text or json, not {LOG_FORMAT!r}")
# The task framework's loggers too: its worker (``db_worker``) gives them a bare handler of
# its own only when none is configured anywhere up the tree, and the root has one (the
# error counter), so without these its lines ("Starting worker", task results) vanished.
LOGGING = logging_config(
    LOG_FORMAT,
    ("streamsite", "notifications", "chat", "assistant", "jobs", "django_tasks", "django_tasks_db"),
)


# Demo data (`manage.py seed_demo`): the password of every demo login.
DEMO_PASSWORD = os.environ.get("DEMO_PASSWORD", "streamsite-demo")
