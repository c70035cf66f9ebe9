"""The site header's state for every page: the counts next to its links."""

from django.utils.functional import SimpleLazyObject

from chat.selectors import unread_label, unread_total


def navigation(request):
    """Add ``nav`` ({chat_unread, chat_unread_label}) for a logged-in user; nothing otherwise.

    ``chat_unread`` is capped (``chat.selectors.UNREAD_CAP``): the label says "99+".

    Lazy: a response that renders no header (a redirect, JSON) runs no query.
    """
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}

    def counts() -> dict:
        unread = unread_total(user)
        return {"chat_unread": unread, "chat_unread_label": unread_label(unread)}

    return {"nav": SimpleLazyObject(counts)}
