"""Settings of the benchmark servers: streamsite's own, plus the baseline's URLs.

Everything that is measured (middleware, database pool, channel layer, SSE settings) is
production's. Two things differ, neither on a measured path:

- static files are served as they are, so no ``collectstatic`` writes into the shared
  ``staticfiles/`` directory and no manifest is needed to start;
- channels-redis logs at INFO, so a message dropped over capacity leaves a line in the
  server's log (the harness counts them as a hint; losses are counted end to end).
"""

from streamsite.settings import *  # noqa: F403
from streamsite.settings import LOGGING, STORAGES

ROOT_URLCONF = "bench.urls"

STORAGES = {
    **STORAGES,
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

LOGGING = {
    **LOGGING,
    "loggers": {
        **LOGGING["loggers"],
        "channels_redis": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}
