"""The notification bell's server-rendered state, for every page that draws the bell."""

from django.utils.functional import SimpleLazyObject

from notifications import selectors

#: Notifications listed in the bell's drop-down.
BELL_LATEST = 5


def bell_state(user_id: int) -> dict:
    """The bell of one user: unread count, the newest few, and the id a page resumes from.

    Four queries whatever the history (the counter, the newest own rows, the newest
    announcements, the unread announcements), five when the newest include announcements
    the user may have read one by one. The newest rows give the last id.
    """
    own, watermark = selectors.counter_of(user_id)
    latest = selectors.latest_notifications(user_id, BELL_LATEST, watermark=watermark)
    return {
        "unread": own + selectors.unread_announcements(user_id, watermark),
        "latest": latest,
        "last_id": latest[0].pk if latest else 0,
    }


def bell(request):
    """Add ``bell`` ({unread, latest, last_id}) for a logged-in user; nothing otherwise.

    Lazy: a response that renders no bell (a redirect, a JSON view using a template) runs
    no query.
    """
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    user_id = user.pk
    return {"bell": SimpleLazyObject(lambda: bell_state(user_id))}
