"""``/metrics``: the Prometheus text format, for staff and for a scraper with the token.

Access: a staff session, or ``Authorization: Bearer <METRICS_TOKEN>`` (compared in
constant time; an empty setting turns token access off). Anyone else gets 404, as if
there were no such page: the figures (and that they exist) are not for visitors.

Under ``manage.py serve`` (``PROMETHEUS_MULTIPROC_DIR`` set) the answer sums every
worker's files (``MultiProcessCollector``), whichever worker the scrape reached;
otherwise it is this process' registry.
"""

import hmac
import os

from django.conf import settings
from django.contrib.auth import get_user
from django.http import HttpResponse, HttpResponseNotFound
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from streamsite.observability import metrics
from streamsite.observability.workers import MULTIPROC_ENV, forget_dead_workers


def render_metrics() -> bytes:
    """Every metric, of every worker when there are several."""
    metrics.flush_tallies()  # this process' own; other workers flush within a second
    directory = os.environ.get(MULTIPROC_ENV)
    if directory:
        forget_dead_workers(directory)
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REGISTRY)


def bearer_token_ok(request) -> bool:
    """Whether the request carries ``Authorization: Bearer <METRICS_TOKEN>``."""
    token = settings.METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    if not token or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header[len("Bearer ") :].strip().encode(), token.encode())


@never_cache
@require_GET
def metrics_view(request):
    """The metrics, or 404 for anyone not allowed to see them (module docstring)."""
    if not bearer_token_ok(request):
        user = get_user(request)
        if not (user.is_active and user.is_staff):
            return HttpResponseNotFound("Not found.\n", content_type="text/plain")
    return HttpResponse(render_metrics(), content_type=CONTENT_TYPE_LATEST)
