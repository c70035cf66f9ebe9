"""The site header's state for every page: the counts next to its links."""

from django.utils.functional import SimpleLazyObject

from chat.selectors import unread_total


def navigation(request):
    """Add ``nav`` ({chat_unread}) for a logged-in user; nothing otherwise.

    Lazy: a response that renders no header (a redirect, JSON) runs no query.
    """
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}

    return {"nav": SimpleLazyObject(lambda: {"chat_unread": unread_total(user)})}
