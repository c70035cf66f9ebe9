"""streamsite's URLs, plus the baseline's endpoints and a readiness probe."""

from django.urls import include, path

from bench import baseline

urlpatterns = [
    path("bench/ready/", baseline.ready),
    path("bench/baseline/stream/", baseline.stream),
    path("bench/baseline/export.ndjson", baseline.export),
    path("", include("streamsite.urls")),
]
