"""Notification links: a site path or an http(s) URL, never one that leaves unexpectedly."""

import pytest
from django.core.exceptions import ValidationError

from notifications.validators import validate_notification_url


@pytest.mark.parametrize(
    "url", ["", "/", "/chat/lobby/#message-4", "https://example.com/a?b=c", "http://x.test"]
)
def test_accepts_site_paths_and_http_urls(url):
    validate_notification_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "JaVaScRiPt:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "//evil.example/",
        # Regression: browsers read a backslash as a slash, so this is http://evil.example/.
        "/\\evil.example/x",
        "https:\\\\evil.example",
        "/ok\\..\\x",
        " /padded",
        "/line\nbreak",
        "/nul\x00",
        "ftp://example.com/",
        "https://",
        "chat/relative",
    ],
)
def test_refuses_urls_that_execute_or_leave_the_site(url):
    with pytest.raises(ValidationError):
        validate_notification_url(url)
