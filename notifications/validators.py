from urllib.parse import urlsplit

from django.core.exceptions import ValidationError


def validate_notification_url(value: str) -> None:
    """Allow a path on this site or an http(s) URL, nothing a browser would execute.

    A notification's link is rendered into pages and followed on click, so
    ``javascript:`` and ``data:`` URLs are refused, and so is anything a browser would
    read as another host: scheme-relative ``//host``, and any backslash (browsers' URL
    parsers treat ``\\`` as ``/``, so ``/\\evil.example/`` leads off-site).
    """
    if not value:
        return
    if any(ch in value for ch in "\r\n\t\x00\\") or value != value.strip():
        raise ValidationError(
            "A link cannot contain backslashes, control characters or spaces at its ends."
        )
    if value.startswith("/") and not value.startswith("//"):
        return
    parts = urlsplit(value)
    if parts.scheme in ("http", "https") and parts.netloc:
        return
    raise ValidationError("Use a path on this site (starting with /) or an http(s) URL.")


def safe_link(value: str) -> str:
    """``value`` if it is a link ``validate_notification_url`` accepts, else ``""``.

    For rendering: validation guards the services, the forms and the admin, but a row can
    be written around them (an import, a data migration, the ORM), and a ``javascript:``
    link rendered as ``<a href>`` runs when clicked. Pages and events link only what
    passes (the browser client checks again, ``safeLink`` in notification-bell.js).
    """
    try:
        validate_notification_url(value)
    except ValidationError:
        return ""
    return value
