"""Checks on what users type into chat: message bodies and room names."""

from django.core.exceptions import ValidationError
from django.core.validators import ProhibitNullCharactersValidator

from chat.conf import max_message_length

_no_nul = ProhibitNullCharactersValidator()


def validate_message_length(value: str) -> None:
    """Refuse a body longer than ``CHAT_MAX_MESSAGE_LENGTH`` (read at call time).

    A function rather than ``MaxLengthValidator(4000)``: migrations record it by name, so
    changing the setting needs no migration.
    """
    limit = max_message_length()
    if len(value) > limit:
        raise ValidationError(
            "A message can be at most %(limit)d characters long (this one has %(length)d).",
            code="too_long",
            params={"limit": limit, "length": len(value)},
        )


def clean_message_body(body: str) -> str:
    """Return ``body`` trimmed, or raise ``ValidationError`` with a ``code`` saying why not.

    Codes: ``blank`` (nothing but whitespace), ``too_long``, and
    ``null_characters_not_allowed`` (PostgreSQL text cannot hold NUL).
    """
    if not isinstance(body, str):
        raise ValidationError("A message must be text.", code="invalid")
    body = body.strip()
    if not body:
        raise ValidationError("A message cannot be empty.", code="blank")
    validate_message_length(body)
    _no_nul(body)
    return body
