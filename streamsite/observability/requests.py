"""``streamsite_http_requests_total``: every HTTP request, by url name, method and status.

The label is the resolved url name (``namespace:name``, a fixed set), never the path, so
``/chat/r/<slug>/`` is one series and a scanner's random paths are all ``unmatched``.
Probes and the scrape itself are left out: they would drown the figures.
"""

from asgiref.sync import iscoroutinefunction, markcoroutinefunction

from streamsite.observability.health import UNLOGGED_PATHS
from streamsite.observability.metrics import http_requests

#: Not counted: the health probes and /metrics.
UNCOUNTED_PATHS = frozenset({*UNLOGGED_PATHS, "/metrics"})
#: Methods outside this set are counted as "other" (the method is client-chosen text).
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def view_label(request) -> str:
    match = getattr(request, "resolver_match", None)
    if match is None or not match.url_name:
        return "unmatched"
    return match.view_name  # "namespace:name": from the URLconf, not from the client


def count(request, response) -> None:
    if request.path in UNCOUNTED_PATHS:
        return
    method = request.method if request.method in METHODS else "other"
    http_requests.labels(view_label(request), method, str(response.status_code)).inc()


class RequestMetricsMiddleware:
    """Count the response of every request (first in MIDDLEWARE: it sees every status)."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.is_async:
            return self.__acall__(request)
        response = self.get_response(request)
        count(request, response)
        return response

    async def __acall__(self, request):
        response = await self.get_response(request)
        count(request, response)
        return response
