from urllib.parse import urlsplit

from django.core.exceptions import ValidationError


def validate_notification_url(value: str) -> None:
    """Allow a path on this site or an http(s) URL, nothing a browser would execute.

    A notification's link is rendered into pages and followed on click, so
    ``javascript:`` and ``data:`` URLs (and scheme-relative ``//host``) are refused.
    """
    if not value:
        return
    if any(ch in value for ch in "\r\n\t\x00") or value != value.strip():
        raise ValidationError("A link cannot contain spaces at its ends or control characters.")
    if value.startswith("/") and not value.startswith("//"):
        return
    parts = urlsplit(value)
    if parts.scheme in ("http", "https") and parts.netloc:
        return
    raise ValidationError("Use a path on this site (starting with /) or an http(s) URL.")
