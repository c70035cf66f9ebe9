from django.shortcuts import render

from assistant.selectors import conversations_of
from chat.selectors import rooms_for
from jobs.selectors import running_jobs_of
from notifications.context_processors import BELL_LATEST

#: Assistant conversations and running jobs on a user's home page (static/js/home.js keeps
#: the lists this long as they change live).
HOME_CONVERSATIONS = 5
HOME_JOBS = 5


def home(request):
    """Render the home page: for a visitor what the site is and a log-in; for a user a
    dashboard (their rooms with unread counts, the latest notifications from the bell,
    their recent assistant conversations, their running jobs), each linking on and each
    kept live by static/js/home.js from the notification stream's events."""
    if not request.user.is_authenticated:
        return render(request, "home.html")
    rooms = [room for room in rooms_for(request.user) if room.role is not None]
    rooms.sort(key=lambda room: (-(room.unread or 0), room.name.lower()))
    conversations = conversations_of(request.user)[:HOME_CONVERSATIONS]  # newest first
    context = {
        "rooms": rooms,
        "conversations": conversations,
        "jobs": running_jobs_of(request.user.pk, HOME_JOBS),
        "list_max": {
            "notifications": BELL_LATEST,
            "conversations": HOME_CONVERSATIONS,
            "jobs": HOME_JOBS,
        },
    }
    return render(request, "home.html", context)
