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


def is_encodable(text: str) -> bool:
    """Whether ``text`` can be written as UTF-8: it holds no lone surrogate.

    JSON may spell one (``"\\ud800"``), and Python decodes it into a string that no
    database, channel layer or socket can encode.
    """
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def clean_message_body(body: str) -> str:
    """Return ``body`` trimmed, or raise ``ValidationError`` with a ``code`` saying why not.

    Codes: ``blank`` (nothing but whitespace), ``too_long``,
    ``null_characters_not_allowed`` (PostgreSQL text cannot hold NUL) and ``invalid`` (not
    text, or a lone surrogate, which is not a character UTF-8 can carry).
    """
    if not isinstance(body, str):
        raise ValidationError("A message must be text.", code="invalid")
    body = body.strip()
    if not body:
        raise ValidationError("A message cannot be empty.", code="blank")
    validate_message_length(body)
    _no_nul(body)
    if not is_encodable(body):
        raise ValidationError("A message cannot hold lone surrogates.", code="invalid")
    return body
