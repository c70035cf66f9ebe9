"""The chat app's settings, read lazily so tests (and ``override_settings``) can change them."""

from django.conf import settings

#: Longest message, in characters after trimming, when ``CHAT_MAX_MESSAGE_LENGTH`` is unset.
DEFAULT_MAX_MESSAGE_LENGTH = 4000
#: Messages in a page of history (the room page, the socket's first ``history`` frame).
HISTORY_PAGE_SIZE = 50
#: The most messages one history request may ask for.
HISTORY_MAX_LIMIT = 100


def max_message_length() -> int:
    """The longest message accepted, in characters (``settings.CHAT_MAX_MESSAGE_LENGTH``)."""
    return getattr(settings, "CHAT_MAX_MESSAGE_LENGTH", DEFAULT_MAX_MESSAGE_LENGTH)
