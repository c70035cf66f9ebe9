"""``/healthz`` (the process answers) and ``/readyz`` (it can serve: database, Redis, hub).

Both are for load balancers and orchestrators, which poll them every few seconds: so they
are cheap, unauthenticated, never cached, and touch no session or CSRF machinery (the
views read no cookie, and ``/readyz`` sends nothing but ``SELECT 1`` and ``PING``). Every
check has a short timeout and its failure is the answer, a 503 with one line saying which
part failed: never a 500, never a traceback, since an outage is exactly when they are asked.
"""

from __future__ import annotations

import asyncio
import logging

from django.conf import settings
from django.db import connection
from django.http import HttpResponse
from django.views.decorators.http import require_GET

from streamsite.streaming.db import db_call
from streamsite.streaming.hub import get_hub
from streamsite.streaming.redis import get_redis

logger = logging.getLogger(__name__)

#: Seconds each dependency has to answer before ``/readyz`` calls it down.
CHECK_TIMEOUT_SECONDS = 1.5

#: Paths that request logs (and request metrics) leave out: pollers hit them every few
#: seconds, and a line per poll would bury what matters. The one list to consult.
UNLOGGED_PATHS = ("/healthz", "/readyz")


def _plain(body: str, status: int = 200) -> HttpResponse:
    response = HttpResponse(f"{body}\n", status=status, content_type="text/plain; charset=utf-8")
    response["Cache-Control"] = "no-store"
    return response


@require_GET
async def healthz(request):
    """The process is up and its event loop answers: no I/O at all."""
    return _plain("ok")


def _select_one() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


async def _database_ok() -> bool:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
            # db_call: the streams' own small pool, which closes its connection after.
            await db_call(_select_one)
    except Exception as error:  # TimeoutError, OperationalError, ...: all mean "down"
        logger.info("readiness: the database does not answer (%s)", type(error).__name__)
        return False
    return True


async def _redis_ok() -> bool:
    client = get_redis()
    if client is None:  # no REDIS_URL: nothing to check
        return True
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
            await client.ping()
    except Exception as error:  # TimeoutError, ConnectionError, ...: all mean "down"
        logger.info("readiness: Redis does not answer (%s)", type(error).__name__)
        return False
    return True


@require_GET
async def readyz(request):
    """200 "ready" when the database, Redis (if configured) and the hub answer; else 503
    naming the parts that failed. The checks run concurrently, so the answer takes at most
    ``CHECK_TIMEOUT_SECONDS``."""
    database, redis = await asyncio.gather(_database_ok(), _redis_ok())
    failed = []
    if not database:
        failed.append("database")
    if settings.REDIS_URL and not redis:
        failed.append("redis")
    if not get_hub().receiving:
        failed.append("hub receive loop")
    if failed:
        return _plain("not ready: " + ", ".join(failed) + " not answering", 503)
    return _plain("ready")
